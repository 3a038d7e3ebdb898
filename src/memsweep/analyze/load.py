"""Read a results folder into small, aggregated frames; the heavy lifting stays in duckdb.

The sample table can hold tens of millions of rows (one per process per tenth of a
second). Nothing here pulls it into pandas: duckdb reads only the needed columns and
returns per trial, per role, per time bucket aggregates (a few thousand rows per trial),
per process peaks and the Ray system overhead. Progress rows (one per Tune result) and
the trial table are small and read whole.

A sampling round writes one row per process with the same ``ts`` on a node; PSS comes
every ``full_interval_s`` only. A bucket holds at least two PSS rounds. Within a bucket
the memory of a role is the sum over its processes of each process's mean over the
bucket's rounds: a snapshot of the trial, computed with one small group per process
and bucket (never one per sampling round, which would cost memory with the row count).
Its time ``t_s`` is the mean time of the rounds behind that value (the PSS rounds for
PSS), not the bucket's middle: the PSS rounds need not sit in the middle, and env steps
are interpolated at ``t_s``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from memsweep.analyze.factors import BUILTIN_FACTORS, FactorValue, trial_factors
from memsweep.analyze.queries import (
    PEAKS_SQL,
    PER_PROCESS_SQL,
    RANGES_SQL,
    SERIES_SQL,
    SYSTEM_SQL,
    connect,
)
from memsweep.errors import DataError
from memsweep.store import Results, open_results
from memsweep.store.reader import SkippedFile, damaged_files, restore_fix
from memsweep.store.writer import first_line
from memsweep.units import natural_order

TRIAL_ROLES = ("trainable", "learner", "replay", "aggregator", "env_runner", "actor", "child")
"""Roles whose processes belong to a trial, in display order."""

SYSTEM_ROLES = ("ray_system", "ray_worker")
"""Ray's own processes (raylet, GCS, dashboard, idle or task workers): of no trial, and in
every Ray run."""

OWN_ROLES = ("driver", "memsweep")
"""Processes of no trial that are not Ray's: ``driver``, the process that ran Tune
(``memsweep run``'s own, or the user's script with :class:`memsweep.MemoryCallback`), and
``memsweep``, memsweep's sampler actors (one per node, only while memsweep measures).
Never counted as Ray system."""

TRIAL_COLUMNS = [
    "trial_id",
    "algorithm",
    "env",
    "api_stack",
    "replay_capacity",
    "model",
    "num_workers",
    "framework",
    "repeat",
    "model_params",
    "obs_bytes",
    "built_replay_capacity",
    "run_id",
    "status",
    "error",
    "started_at",
    "ended_at",
    "env_steps",
    "factors_json",
]
"""Columns of ``trials.parquet`` the analysis uses (absent ones read as null)."""


@dataclass(frozen=True, eq=False)
class SweepData:
    """What the analysis needs from a results folder, already aggregated.

    **Units.** Bytes for memory, seconds for time (``t_s`` since the trial's first sample,
    ``ts_s`` since the epoch).
    """

    uri: str
    """The results location as given."""

    name: str
    """Sweep name (from ``study.yaml``, else the folder name)."""

    trials: pd.DataFrame
    """One row per trial of ``trials.parquet`` (columns ``TRIAL_COLUMNS``), index ``trial_id``."""

    series: pd.DataFrame
    """Per trial, role (and ``total``), bucket: ``t_s``, ``mem_bytes`` (the chosen metric),
    ``pss_bytes``, ``rss_bytes``, ``uss_bytes``, ``hwm_bytes``, ``swap_bytes``, ``env_steps``,
    ``stored`` (transitions in the buffer), ``bucket_s``."""

    peaks: pd.DataFrame
    """Per trial and role, and per trial as role ``total``: ``peak_bytes`` (the one peak,
    max over time of Σ PSS: :mod:`memsweep.store.peaks`), ``peak_rss_bytes`` (max Σ RSS),
    ``hwm_bytes`` (Σ over processes of their VmHWM: an upper bound that shows spikes
    between samples but counts shared pages once per process), ``processes``."""

    progress: pd.DataFrame
    """Tune results: ``trial_id``, ``t_s`` (since the trial's first sample), ``env_steps``,
    ``stored``."""

    system: pd.DataFrame
    """Per node and role of no trial (``SYSTEM_ROLES``: Ray's own; ``OWN_ROLES``: the Tune
    driver and memsweep's samplers): median ``mem_bytes`` of a round."""

    sample_rows: int
    """Rows in ``samples/``."""

    metric: Literal["pss_bytes", "rss_bytes"]
    """Which memory figure ``mem_bytes`` is: PSS (shared pages split between sharers) when
    the sampler recorded it, else RSS (which double-counts shared memory)."""

    full_interval_s: float
    """Seconds between PSS reads, from ``study.yaml`` (1 s if absent)."""

    factors: Mapping[str, Mapping[str, FactorValue]] = field(default_factory=dict)
    """Per trial id: factor name → value, from ``factors_json`` (every factor of the
    trial, built-ins and any dotted config key), else from the built-in columns."""

    factor_names: tuple[str, ...] = ()
    """Every factor seen in any trial: the built-ins first, then the others sorted."""

    missing: tuple[str, ...] = ()
    """What the folder lacks, one sentence each (trials with no samples, no progress, …)."""

    notes: tuple[str, ...] = ()
    """Other facts the report should state (metric fallback, running trials)."""

    skipped: tuple[str, ...] = ()
    """Damaged Parquet files of ``samples/`` and ``progress/`` left out, one sentence each
    (which file, why, the fix); also in ``missing``."""

    timings_s: dict[str, float] = field(default_factory=dict)
    """Wall time of each read step."""

    starts_s: Mapping[str, float] = field(default_factory=dict)
    """Per trial id: its first sample's time, seconds since the epoch (``t_s`` = 0)."""


def _study_facts(results: Results) -> tuple[str, float]:
    name = results.uri.rstrip("/").rsplit("/", 1)[-1]
    full_interval_s = 1.0
    text = results.text("study.yaml")
    if text:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError:
            data = None
        if isinstance(data, dict):
            name = str(data.get("name") or name)
            sampling = data.get("sampling")
            if isinstance(sampling, dict) and isinstance(
                sampling.get("full_interval_s"), int | float
            ):
                full_interval_s = float(sampling["full_interval_s"])
    return name, full_interval_s


def bucket_width_s(duration_s: float, full_interval_s: float, max_buckets: int) -> float:
    """Bucket width: at least two PSS reads per bucket, at most ``max_buckets`` per trial."""
    return max(2.0 * full_interval_s, duration_s / max(max_buckets, 1))


def stored_transitions(
    env_steps: np.ndarray[Any, Any], replay_size: np.ndarray[Any, Any], capacity: float
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Transitions in the buffer: ``replay_size`` where reported, else min(env steps, capacity)."""
    steps = np.asarray(env_steps, dtype=np.float64)
    reported = np.asarray(replay_size, dtype=np.float64)
    if capacity <= 0:
        return np.zeros_like(steps)
    filled = np.minimum(steps, capacity)
    return np.where(np.isfinite(reported), np.minimum(reported, capacity), filled)


def load_sweep(source: str | Results, max_buckets: int = 600) -> SweepData:
    """Aggregate a results folder (a location, or an opened :class:`Results`);
    :class:`DataError` if there is nothing to analyse."""
    clock = time.perf_counter()
    timings: dict[str, float] = {}
    results = source if isinstance(source, Results) else open_results(source)
    uri = results.uri
    name, full_interval_s = _study_facts(results)
    missing: list[str] = []
    notes: list[str] = []

    if not results.exists("trials.parquet"):
        raise DataError(
            f"{uri}: partial dataset: no trials.parquet, so the factor values of the trials are "
            "unknown: restore it from a copy of the results folder, or run the sweep again "
            "with --resume (its driver writes it as trials start)."
        )
    trials = results.table("trials").to_pandas()
    if trials.empty:
        raise DataError(f"{uri}: empty dataset: trials.parquet lists no trials.")
    trials = (
        trials.reindex(columns=TRIAL_COLUMNS)
        .drop_duplicates("trial_id", keep="last")
        .set_index("trial_id")
    )

    samples = results.readable("samples")
    progress_files = results.readable("progress")
    sample_skips = list(samples.skipped)
    files = list(samples.files)
    if not files and not samples.skipped:
        raise DataError(
            f"{uri}: partial dataset: {len(trials)} trial(s) but no samples/ part files. "
            "Was the memory sampler running? See events/ and the driver log."
        )
    try:
        scan = _scan_samples(results, files, sample_skips, trials, full_interval_s, max_buckets)
    except duckdb.Error as exc:
        # A file whose footer reads but whose pages do not (a disk error, a copy that
        # overwrote bytes): find it by reading each file whole (only now, on failure), leave
        # it out and scan the rest.
        damaged = damaged_files(results.fs, files)
        if not damaged:
            raise DataError(
                f"{uri}: cannot read the sample data ({first_line(exc)}); a Parquet file of "
                "samples/ is damaged: restore the folder from a copy"
            ) from None
        sample_skips += damaged
        files = [f for f in files if f not in {d.path for d in damaged}]
        scan = _scan_samples(results, files, sample_skips, trials, full_interval_s, max_buckets)
    timings.update(scan.timings_s)
    sample_rows, ranges, raw, peaks, system = (
        scan.sample_rows,
        scan.ranges,
        scan.raw,
        scan.peaks,
        scan.system,
    )

    has_pss = raw["pss_bytes"].notna().any()
    metric: Literal["pss_bytes", "rss_bytes"] = "pss_bytes" if has_pss else "rss_bytes"
    if not has_pss:
        notes.append(
            "No PSS in the samples: memory is summed RSS, which counts shared pages (libraries, "
            "Ray's object store) once per process and so overstates the total."
        )
    system["mem_bytes"] = system[metric]

    progress_skips = list(progress_files.skipped)
    progress_table = _read_progress(results, list(progress_files.files), progress_skips)
    skipped = [*sample_skips, *progress_skips]
    # Microseconds since the epoch, converted in Arrow (whatever unit pandas would pick).
    ts_us = pc.cast(pc.cast(progress_table["ts"], pa.timestamp("us", tz="UTC")), pa.int64())
    progress = progress_table.drop_columns(["ts"]).to_pandas()
    progress["ts_s"] = ts_us.to_numpy(zero_copy_only=False) / 1e6
    if "run_id" in progress:
        latest = progress["trial_id"].map(trials["run_id"])
        keep = latest.isna() | progress["run_id"].isna() | (progress["run_id"] == latest)
        progress = progress[keep]

    starts = ranges.set_index("trial_id")["t0_us"].astype("int64") / 1e6
    bucket_s = pd.Series(scan.width_s, index=ranges["trial_id"].to_numpy())
    series, progress_rel = _attach_steps(
        raw,
        progress=progress,
        trial_table=trials,
        starts_s=starts,
        bucket_s=bucket_s,
        metric=metric,
    )

    missing += [f.note(results.root) for f in skipped]
    sampled = set(ranges["trial_id"])
    with_progress = set(progress["trial_id"])
    for trial_id, row in trials.iterrows():
        status = cell_text(row["status"], "unknown")
        if trial_id not in sampled:
            text = " ".join(cell_text(row["error"], "").split())  # one line: Ray's are several
            error = f": {text[:197] + '…' if len(text) > 200 else text}" if text else ""
            missing.append(f"trial {trial_id} ({status}{error}) has no memory samples")
        elif trial_id not in with_progress:
            missing.append(
                f"trial {trial_id} ({status}) has samples but no Tune results (progress/): "
                "memory cannot be related to env steps"
            )
        if status == "running":
            notes.append(f"trial {trial_id} is still running: its data ends at the last flush")
    for column, what in (
        ("env", "environments"),
        ("algorithm", "algorithms"),
        ("obs_bytes", "observation sizes"),
    ):
        values = trials[column].dropna().unique()
        if len(values) > 1:
            notes.append(
                f"the trials span {len(values)} {what} ({', '.join(map(str, natural_order(values.tolist())))}): the factor "
                "models pool them; analyse each in its own sweep for separate coefficients"
            )
    factors, factor_notes = trial_factors(trials)
    missing += factor_notes
    names = dict.fromkeys(n for n in BUILTIN_FACTORS if any(n in f for f in factors.values()))
    names.update(dict.fromkeys(sorted({n for f in factors.values() for n in f} - set(names))))
    for trial_id in sorted(sampled - set(trials.index)):
        missing.append(
            f"trial {trial_id} has samples but no row in trials.parquet (factors unknown): skipped"
        )
    timings["read_s"] = time.perf_counter() - clock
    return SweepData(
        uri=uri,
        name=name,
        trials=trials,
        series=series,
        peaks=peaks,
        progress=progress_rel,
        system=system,
        sample_rows=sample_rows,
        metric=metric,
        full_interval_s=full_interval_s,
        factors=factors,
        factor_names=tuple(names),
        missing=tuple(missing),
        skipped=tuple(f.note(results.root) for f in skipped),
        notes=tuple(dict.fromkeys(notes)),
        timings_s=timings,
        starts_s={str(k): float(v) for k, v in starts.items()},
    )


PROGRESS_COLUMNS = ["trial_id", "ts", "env_steps", "replay_size"]
"""Columns of ``progress/`` the analysis reads (and ``run_id`` where the files have it)."""


def _read_progress(results: Results, files: list[str], skipped: list[SkippedFile]) -> pa.Table:
    """The progress rows of ``files``; a file whose pages cannot be read (its footer could)
    is found by reading each whole, appended to ``skipped`` and left out."""
    try:
        dataset = results.dataset("progress", files)
        columns = PROGRESS_COLUMNS + ["run_id"] * ("run_id" in dataset.schema.names)
        return dataset.to_table(columns=columns)
    except (pa.ArrowInvalid, OSError) as exc:
        damaged = damaged_files(results.fs, files)
        if not damaged:
            raise DataError(
                f"{results.uri}: cannot read progress/ ({first_line(exc)}); a Parquet file of "
                "progress/ is damaged: restore the folder from a copy"
            ) from None
        skipped += damaged
        bad = {d.path for d in damaged}
        return _read_progress(results, [f for f in files if f not in bad], skipped)


class _Scan(NamedTuple):
    """The duckdb aggregates of the sample files (see :func:`load_sweep`)."""

    sample_rows: int
    ranges: pd.DataFrame
    width_s: list[float]
    raw: pd.DataFrame
    peaks: pd.DataFrame
    system: pd.DataFrame
    timings_s: dict[str, float]


def _scan_samples(
    results: Results,
    files: list[str],
    skipped: list[SkippedFile],
    trials: pd.DataFrame,
    full_interval_s: float,
    max_buckets: int,
) -> _Scan:
    """Aggregate the sample files in duckdb; :class:`DataError` when none is readable (the
    ``skipped`` damaged ones named) or none of their rows belongs to a trial;
    ``duckdb.Error`` from a damaged file."""
    uri = results.uri
    if not files:
        damaged = skipped[0]
        more = len(skipped) - 1
        raise DataError(
            f"{uri}: no readable memory samples: {damaged.problem(results.root)}"
            + (f" (and {more} more file(s) of samples/)" if more else "")
            + f"; {restore_fix(damaged.path)}"
        )
    clock = time.perf_counter()
    timings: dict[str, float] = {}
    con = connect(results, files, trials)
    try:
        sample_rows = int(con.sql("SELECT count(*) FROM samples").fetchall()[0][0])
        ranges = con.sql(RANGES_SQL).df()
        if ranges.empty:
            raise DataError(
                f"{uri}: {sample_rows} sample rows but none belongs to a trial (trial_id is "
                "null everywhere): nothing to analyse."
            )
        timings["scan_ranges_s"] = time.perf_counter() - clock
        duration_s = (ranges["t1_us"] - ranges["t0_us"]) / 1e6
        width_s = [bucket_width_s(d, full_interval_s, max_buckets) for d in duration_s]
        widths = pd.DataFrame(
            {
                "trial_id": ranges["trial_id"],
                "t0_us": ranges["t0_us"].astype("int64"),
                "width_us": [max(1, round(w * 1e6)) for w in width_s],
            }
        )
        con.register("widths", widths)
        step = time.perf_counter()
        con.execute(PER_PROCESS_SQL)
        raw = con.sql(SERIES_SQL).df()
        peaks = con.sql(PEAKS_SQL).df()
        timings["aggregate_trials_s"] = time.perf_counter() - step
        step = time.perf_counter()
        system = con.sql(SYSTEM_SQL).df()
        timings["aggregate_system_s"] = time.perf_counter() - step
    finally:
        con.close()
    return _Scan(sample_rows, ranges, width_s, raw, peaks, system, timings)


def _attach_steps(
    raw: pd.DataFrame,
    *,
    progress: pd.DataFrame,
    trial_table: pd.DataFrame,
    starts_s: pd.Series,
    bucket_s: pd.Series,
    metric: str,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Add time since trial start, a ``total`` role, and env steps interpolated from progress."""
    raw = raw[raw["trial_id"].isin(trial_table.index)].copy()
    raw["bucket_s"] = raw["trial_id"].map(bucket_s)
    middle = (raw["bucket"] + 0.5) * raw["bucket_s"]
    rounds_t = raw["t_pss_s"] if metric == "pss_bytes" else raw["t_all_s"]
    raw["t_s"] = rounds_t.fillna(raw["t_all_s"]).fillna(middle)
    raw["mem_bytes"] = raw[metric]
    value_columns = ["mem_bytes", "pss_bytes", "rss_bytes", "uss_bytes", "hwm_bytes", "swap_bytes"]
    grouped = raw.groupby(["trial_id", "bucket"], sort=False)
    total = grouped[value_columns].sum(min_count=1)
    complete = grouped[value_columns].count().eq(grouped["role"].count(), axis=0)
    total = total.where(complete).reset_index()
    firsts = grouped[["bucket_s", "rounds"]].first().reset_index(drop=True)
    total[["bucket_s", "rounds"]] = firsts.to_numpy()
    total["t_s"] = grouped["t_s"].mean().to_numpy()
    total["role"] = "total"
    series = pd.concat([raw, total], ignore_index=True)
    series = series.sort_values(["trial_id", "role", "t_s"], ignore_index=True)

    env_steps = np.full(len(series), np.nan)
    stored_all = np.full(len(series), np.nan)
    t_all = series["t_s"].to_numpy(dtype=np.float64)
    positions = series.groupby("trial_id", sort=False).indices
    progress_parts = []
    for trial_id, unsorted in progress.groupby("trial_id", sort=False):
        if trial_id not in positions or trial_id not in starts_s.index:
            continue
        rows = unsorted.sort_values("ts_s")
        t_rel = rows["ts_s"].to_numpy() - float(starts_s[trial_id])
        steps = rows["env_steps"].astype("float64").to_numpy()
        capacity = trial_capacity(trial_table.loc[trial_id])
        stored = stored_transitions(
            steps, rows["replay_size"].astype("float64").to_numpy(), capacity
        )
        progress_parts.append(
            pd.DataFrame({"trial_id": trial_id, "t_s": t_rel, "env_steps": steps, "stored": stored})
        )
        where = positions[trial_id]
        t_mid = t_all[where]
        inside = (t_mid >= t_rel[0]) & (t_mid <= t_rel[-1])
        env_steps[where] = np.where(inside, np.interp(t_mid, t_rel, steps), np.nan)
        stored_all[where] = np.where(inside, np.interp(t_mid, t_rel, stored), np.nan)
    series["env_steps"] = env_steps
    series["stored"] = stored_all
    progress_rel = (
        pd.concat(progress_parts, ignore_index=True)
        if progress_parts
        else pd.DataFrame(columns=["trial_id", "t_s", "env_steps", "stored"])
    )
    return series, progress_rel


def cell_text(value: Any, default: str) -> str:
    """A string cell, or ``default`` when it is null (None, NaN or NA)."""
    return default if value is None or bool(pd.isna(value)) else str(value)


def trial_capacity(trial: pd.Series) -> float:
    """The replay capacity RLlib built, else the one asked for; 0 when there is no buffer."""
    for key in ("built_replay_capacity", "replay_capacity"):
        value = trial.get(key)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            return float(value)
    return 0.0

"""The short per-trial summary printed at the end of ``memsweep run``.

The trial's peak is :data:`memsweep.store.peaks.PEAK_DEFINITION` (max over time of Σ PSS:
shared pages once); peak Σ RSS and Σ VmHWM stay as their own columns (see
:mod:`memsweep.store.peaks` for what each answers). Why each trial stopped comes from
``trials.parquet``'s ``stop_reason``: a trial stopped by its time cap is named, since its
buffer may not have filled or its plateau may be too short to measure.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from memsweep import result_keys as keys
from memsweep.store import Results
from memsweep.store.peaks import trial_peaks
from memsweep.units import as_written, format_bytes


@dataclass(frozen=True)
class TrialSummary:
    trial_id: str
    factors: dict[str, Any]
    status: str
    stop_reason: str | None
    """Why a finished trial stopped (``plateau``, ``env_steps``, ``iterations``,
    ``time_cap``); None for one that failed or was stopped by memsweep."""
    processes: int
    peak_bytes: int | None
    """The trial's peak: max over time of Σ PSS."""
    peak_rss_bytes: int | None
    hwm_bytes: int | None
    other_factors: dict[str, Any] = field(default_factory=dict)
    """Factors beyond the four built-ins (an ``rllib:`` key, an ``env_config`` key, a
    user Tuner's varied key), from the trials table's ``factors_json``."""
    error: str | None = None
    """The first line of why a failed trial failed (``trials.parquet`` ``error``)."""


DRIVER_GOAL_BYTES = 300_000_000
"""Goal for the driver's peak RSS during a sweep (issue #16): 300 MB."""


@dataclass(frozen=True)
class DriverPeak:
    """The sweep driver's largest RSS and, at that sample, its two parts; bytes."""

    rss_bytes: int
    anon_bytes: int | None
    """``RssAnon``: the driver's own heap and stacks (Python objects, Ray's core worker)."""
    file_bytes: int | None
    """``RssFile``: pages of mapped library files (Ray, pyarrow, Python), which every Ray
    process on the node maps too; how many are resident depends on the page cache (a
    freshly installed virtualenv's libraries are all cached, and the kernel maps cached
    pages around each one touched)."""


def driver_peak_rss(results: Results) -> DriverPeak | None:
    """The sweep driver's (``memsweep run``'s own process) largest RSS and its parts, from
    the ``samples`` rows of role ``driver``; None when no driver was sampled (a driver on
    another node than any sampler, or a run before the samplers started)."""
    import pyarrow.compute as pc

    dataset = results.dataset("samples")
    table = dataset.to_table(
        columns=["rss_bytes", "rss_anon_bytes", "rss_file_bytes"],
        filter=pc.field("role") == "driver",
    )
    if not table.num_rows or pc.max(table["rss_bytes"]).as_py() is None:
        return None
    at = pc.index(table["rss_bytes"], pc.max(table["rss_bytes"])).as_py()
    row = table.slice(at, 1).to_pylist()[0]
    return DriverPeak(
        rss_bytes=int(row["rss_bytes"]),
        anon_bytes=row["rss_anon_bytes"],
        file_bytes=row["rss_file_bytes"],
    )


def format_driver_peak(peak: DriverPeak | None, whole_command_bytes: int | None = None) -> str:
    """One line: the driver's peak RSS while the trials ran (its samples) against its
    goal, with its anonymous and library-file parts (or why there is none).

    ``whole_command_bytes``: the driver process's peak RSS over its whole life so far
    (the kernel's VmHWM, ``getrusage``'s ``ru_maxrss``), said after it: it also covers
    compacting the results and building this summary once the trials have ended, when
    the driver's memory no longer shares the node with any trial (one 1-trial sweep:
    270 MB sampled, 329 MB VmHWM, ~50 MB of it reading the samples for this table and
    ~6 MB compacting)."""
    if peak is None:
        line = "driver peak RSS: not sampled (the driver ran on no sampled node)"
    else:
        verdict = "met" if peak.rss_bytes <= DRIVER_GOAL_BYTES else "MISSED"
        parts = (
            f": {format_bytes(peak.anon_bytes)} its own, {format_bytes(peak.file_bytes)} "
            "library files shared with Ray's processes"
            if peak.anon_bytes is not None and peak.file_bytes is not None
            else ""
        )
        line = (
            f"driver peak RSS while the trials ran: {format_bytes(peak.rss_bytes)} "
            f"(memsweep's own process{parts}; "
            f"goal ≤ {format_bytes(DRIVER_GOAL_BYTES)}: {verdict})"
        )
    if whole_command_bytes is not None:
        line += (
            f"; the whole command, with compacting the results and this summary: "
            f"{format_bytes(whole_command_bytes)} (VmHWM)"
        )
    return line


def _cell(value: Any) -> str:
    """A factor value as written: 2000, not 2000.0; "-" when the trial has none."""
    return "-" if value is None else as_written(value)


def _show(value: int | None) -> str:
    return "-" if value is None else format_bytes(value)


def trial_summaries(results: Results) -> list[TrialSummary]:
    """One summary per trial in the trials table, in start order."""
    trials = results.table("trials").to_pylist()
    peaks = trial_peaks(results.dataset("samples"))
    out = []
    for trial in sorted(trials, key=lambda t: (t.get("started_at") is None, t.get("started_at"))):
        peak = peaks.get(trial["trial_id"])
        out.append(
            TrialSummary(
                trial_id=trial["trial_id"],
                factors={
                    "replay_capacity": trial.get("replay_capacity"),
                    "model": trial.get("model"),
                    "num_workers": trial.get("num_workers"),
                    "framework": trial.get("framework"),
                },
                status=str(trial.get("status")),
                stop_reason=trial.get("stop_reason"),
                processes=peak.processes if peak else 0,
                peak_bytes=peak.peak_bytes if peak else None,
                peak_rss_bytes=peak.peak_rss_bytes if peak else None,
                hwm_bytes=peak.hwm_bytes if peak else None,
                other_factors=_other_factors(trial.get("factors_json")),
                error=_first_line(trial.get("error")),
            )
        )
    return out


BUILT_IN_FACTORS = ("replay_capacity", "model", "num_workers", "framework")


def _other_factors(factors_json: str | None) -> dict[str, Any]:
    if not factors_json:
        return {}
    try:
        factors = json.loads(factors_json)
    except ValueError:
        return {}
    return {k: v for k, v in factors.items() if k not in BUILT_IN_FACTORS}


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b.*:")
_RAY_FIELD_LINE = re.compile(r"^[a-z_]+: \S+$")  # Ray's "ip: 127.0.0.1", "pid: 4711"


def _first_line(text: str | None) -> str | None:
    """The line of a trial's error that says why: the last exception line of a
    traceback (``ValueError: size 16 is too big``), else the first line that is not one
    of Ray's ``field: value`` lines; at most 300 characters."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if not lines:
        return None
    raised = [line for line in lines if _EXCEPTION_LINE.match(line)]
    told = [line for line in lines if not _RAY_FIELD_LINE.match(line)]
    line = raised[-1] if raised else (told or lines)[0]
    return line if len(line) <= 300 else line[:299] + "…"


def format_summaries(summaries: list[TrialSummary]) -> str:
    """The table, then one line naming the trials their time cap stopped (if any)."""
    header: tuple[str, ...] = (
        "trial",
        "capacity",
        "model",
        "workers",
        "framework",
        "status",
        "stopped by",
        "procs",
        "peak (Σ PSS)",
        "peak Σ RSS",
        "Σ VmHWM",
    )
    # The other factors' columns, after the built-ins, in the order the trials name them.
    others = list(dict.fromkeys(k for s in summaries for k in s.other_factors))
    header = (*header[:5], *others, *header[5:])
    rows = [
        (
            s.trial_id,
            str(s.factors["replay_capacity"]),
            str(s.factors["model"]),
            str(s.factors["num_workers"]),
            str(s.factors["framework"]),
            *(_cell(s.other_factors.get(k)) for k in others),
            s.status,
            s.stop_reason or "-",
            str(s.processes),
            _show(s.peak_bytes),
            _show(s.peak_rss_bytes),
            _show(s.hwm_bytes),
        )
        for s in summaries
    ]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    for s in summaries:
        if s.error:
            lines.append(f"{s.trial_id} {s.status}: {s.error}")
    capped = [s.trial_id for s in summaries if s.stop_reason == keys.STOP_TIME_CAP]
    if capped:
        lines.append(
            f"{len(capped)} trial(s) stopped by their time cap before their plateau (the "
            f"machine sampled slower than memsweep validate estimated): {', '.join(capped)}; "
            "raise stop.seconds or lower the load"
        )
    return "\n".join(lines)

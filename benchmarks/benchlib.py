"""What every benchmark section shares: the profile, figures with their spread, the table.

A section returns :class:`Row` objects, one per figure and tool; ``run.py`` renders them
as one table (text, Markdown) and one JSON file. A figure measured over repeats is a
:class:`Stat` (median, min, max, n); a row's ``ratio`` is the comparison made in the
same run (to the no-monitor median, to the true peak, to ground truth).
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

REPO = Path(__file__).resolve().parents[1]

MiB = 2**20

Status = Literal["met", "MISSED", "info", "n/a", "not measured", "error"]


@dataclass(frozen=True)
class Profile:
    """Sizes of one benchmark run: ``smoke`` (CI), ``default`` (``make bench``), ``full``."""

    name: str
    """Profile name, recorded with the results."""

    overhead_repeats: int
    """Repeats of each overhead variant (runs are interleaved: A B C D A B C D …)."""

    overhead_iterations: int
    """RLlib iterations per overhead run; throughput is taken from the 1st to the last."""

    sampler_process_counts: tuple[int, ...]
    """Numbers of idle processes the sampler cost is measured on."""

    sampler_rounds: int
    """Sampling rounds timed per process count and round kind (fast, full)."""

    peak_repeats: int
    """Spikes per spike length (each in its own trial, at a random moment)."""

    peak_spike_bytes: int
    """Bytes the spike trial touches on top of its resting memory."""

    peak_small_spike_bytes: int
    """A spike small enough to fill in milliseconds (shortest length only, memsweep only)."""

    peak_spike_lengths_s: tuple[float, ...]
    """Spike lengths, seconds."""

    attribution_iterations: int
    """RLlib iterations of each of the two concurrent trials on the two-node cluster."""

    analysis_rows: tuple[int, ...]
    """Sample rows of the synthetic sweeps the analysis is timed on."""

    analysis_repeats: int
    """Repeats of each analysis size (each generates its sweep anew)."""

    run_default_sweep: bool
    """Run ``sweeps/default.yaml`` for the time to answer (else read the last run's)."""

    install_mlflow: bool = True
    """Create the MLflow virtualenv if it is missing (about a minute of pip); the smoke
    profile uses it only if it is there, and otherwise says MLflow was not measured."""


SMOKE = Profile(
    name="smoke",
    overhead_repeats=1,
    overhead_iterations=2,
    sampler_process_counts=(5, 20),
    sampler_rounds=10,
    peak_repeats=1,
    peak_spike_bytes=64 * MiB,
    peak_small_spike_bytes=16 * MiB,
    peak_spike_lengths_s=(0.05, 0.2, 1.0),
    attribution_iterations=2,
    analysis_rows=(20_000, 200_000),
    analysis_repeats=1,
    run_default_sweep=False,
    install_mlflow=False,
)
DEFAULT = Profile(
    name="default",
    overhead_repeats=3,
    overhead_iterations=6,
    sampler_process_counts=(10, 50, 200),
    sampler_rounds=50,
    peak_repeats=3,
    peak_spike_bytes=512 * MiB,
    peak_small_spike_bytes=64 * MiB,
    peak_spike_lengths_s=(0.05, 0.2, 1.0),
    attribution_iterations=3,
    analysis_rows=(1_000_000, 10_000_000),
    analysis_repeats=2,
    run_default_sweep=False,
)
FULL = Profile(
    name="full",
    overhead_repeats=5,
    overhead_iterations=10,
    sampler_process_counts=(10, 50, 100, 200),
    sampler_rounds=200,
    peak_repeats=5,
    peak_spike_bytes=512 * MiB,
    peak_small_spike_bytes=64 * MiB,
    peak_spike_lengths_s=(0.05, 0.2, 1.0),
    attribution_iterations=5,
    analysis_rows=(1_000_000, 10_000_000, 50_000_000),
    analysis_repeats=3,
    run_default_sweep=True,
)
PROFILES = {p.name: p for p in (SMOKE, DEFAULT, FULL)}


@dataclass(frozen=True)
class Stat:
    """A figure measured ``n`` times: its median and range."""

    median: float
    low: float
    high: float
    n: int
    values: tuple[float, ...] = ()
    """Every measurement, in the order taken."""

    @classmethod
    def of(cls, values: Iterable[float | None]) -> Stat | None:
        """The stat of the finite values; ``None`` when there are none."""
        kept = [float(v) for v in values if v is not None and math.isfinite(float(v))]
        if not kept:
            return None
        return cls(statistics.median(kept), min(kept), max(kept), len(kept), tuple(kept))

    @classmethod
    def one(cls, value: float) -> Stat:
        return cls(float(value), float(value), float(value), 1, (float(value),))


@dataclass(frozen=True)
class Row:
    """One line of the table: a figure, the tool it is about, and how it compares."""

    key: str
    """Stable id, e.g. ``overhead.memsweep_10hz`` (the smoke test checks these)."""
    section: str
    figure: str
    """What is measured, with its conditions."""
    tool: str
    unit: str
    """``steps/s``, ``fraction``, ``bytes``, ``s``, ``us``, ``count``, ``x``, ``%cpu``."""
    stat: Stat | None
    ratio: float | None = None
    """The same-run comparison: to the no-monitor median, to the truth, ..."""
    ratio_of: str = ""
    """What the ratio is relative to."""
    goal: str = ""
    status: Status = "info"
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        if self.stat is not None:
            data["stat"]["values"] = list(self.stat.values)
        return data


SECTIONS = {
    "overhead": "1. Overhead",
    "sampler": "1b. Sampler cost",
    "peak": "2. Peak capture",
    "attribution": "3. Attribution",
    "analysis": "4. Analysis speed",
    "answer": "5. Time to answer",
    "growth": "6. Growth verdict",
    "accuracy": "7. Prediction accuracy",
    "compaction": "8. Files after compaction",
    "driver": "9. Driver memory",
}


def log(message: str) -> None:
    """Progress on stderr; the table goes to stdout."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- formatting ------------------------------------------------------------------------


def format_value(value: float | None, unit: str) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    if unit == "fraction":
        return f"{value * 100:.1f}%"
    if unit == "bytes":
        if abs(value) >= 10**9:
            return f"{value / 1e9:.2f} GB"
        return f"{value / 1e6:.0f} MB"
    if unit == "s":
        return f"{value:.2f} s" if value < 100 else f"{value:.0f} s"
    if unit == "us":
        return f"{value:.0f} µs" if value >= 10 else f"{value:.1f} µs"
    if unit == "x":
        return f"{value:.2f}×"
    if unit == "%cpu":
        return f"{value:.1f}% cpu"
    if unit == "count":
        return f"{value:.0f}"
    if unit == "steps":
        return f"{value:,.0f} steps"
    if unit == "steps/s":
        return f"{value:.0f}/s"
    if unit == "ns/row":
        return f"{value:.0f} ns/row"
    return f"{value:.3g} {unit}".strip()


def format_stat(stat: Stat | None, unit: str) -> str:
    if stat is None:
        return "-"
    text = format_value(stat.median, unit)
    if stat.n > 1:
        text += f" [{format_value(stat.low, unit)}–{format_value(stat.high, unit)}] n={stat.n}"
    return text


def format_ratio(row: Row) -> str:
    if row.ratio is None or not math.isfinite(row.ratio):
        return ""
    if row.unit == "fraction" or row.ratio_of.startswith("%"):
        return f"{row.ratio * 100:.1f}% {row.ratio_of.lstrip('%')}".strip()
    return f"{row.ratio:.3f}× {row.ratio_of}".strip()


_HEADER = ("figure", "tool", "median [min–max] n", "ratio", "goal", "status", "note")


def _cells(row: Row) -> tuple[str, ...]:
    status = "" if row.status == "info" else row.status
    return (
        row.figure,
        row.tool,
        format_stat(row.stat, row.unit),
        format_ratio(row),
        row.goal,
        status,
        row.note,
    )


def render_text(rows: Sequence[Row]) -> str:
    """The table as aligned plain text, one block per section (notes last, unpadded)."""
    cells = [_cells(r) for r in rows]
    widths = [len(h) for h in _HEADER]
    for line in cells:
        for i, cell in enumerate(line):
            widths[i] = max(widths[i], len(cell))

    def join(line: Sequence[str]) -> str:
        padded = [c.ljust(w) for c, w in zip(line[:-1], widths, strict=False)]
        return "  ".join([*padded, line[-1]]).rstrip()

    out = [join(_HEADER)]
    section = None
    for row, line in zip(rows, cells, strict=True):
        if row.section != section:
            section = row.section
            out.append(f"-- {SECTIONS.get(section, section)} ".ljust(40, "-"))
        out.append(join(line))
    return "\n".join(out)


def render_markdown(rows: Sequence[Row]) -> str:
    out = ["| " + " | ".join(_HEADER) + " |", "|" + " --- |" * len(_HEADER)]
    section = None
    for row in rows:
        if row.section != section:
            section = row.section
            out.append(f"| **{SECTIONS.get(section, section)}** |" + " |" * (len(_HEADER) - 1))
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in _cells(row)) + " |")
    return "\n".join(out)


# -- the machine -------------------------------------------------------------------------


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine_specs() -> dict[str, Any]:
    """Cores, RAM, CPU model, date, load and package versions of this run: what a sweep's
    ``versions.json`` records, plus the CPU and the load the figures were taken under."""
    import psutil

    from memsweep.run.sweep import versions

    return {
        **versions(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "load_average_start": os.getloadavg(),
    }


# -- Ray ---------------------------------------------------------------------------------

WORKER_ENV = {
    "TF_USE_LEGACY_KERAS": "1",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "PYTHONWARNINGS": "ignore::DeprecationWarning",
}


@contextlib.contextmanager
def private_ray_tmpdir() -> Iterator[Path]:
    """Point Ray at a temp dir of its own for the whole benchmark.

    Other people run Ray on this machine. A ``ray.cluster_utils.Cluster`` writes its
    address to ``<tmp>/ray/ray_current_cluster``, where any ``ray.init()`` without an
    address (theirs) would find and join it; with ``RAY_TMPDIR`` set, that file, the
    sessions and the sockets all live in this folder instead (short: socket paths are
    limited to 107 bytes).
    """
    folder = Path(tempfile.mkdtemp(prefix="msb", dir="/tmp"))
    previous = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = str(folder)
    try:
        yield folder
    finally:
        if previous is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = previous
        shutil.rmtree(folder, ignore_errors=True)


def start_local_ray() -> None:
    """A fresh local Ray of 2 CPUs (never someone else's), dashboard on loopback."""
    import ray

    for key, value in WORKER_ENV.items():
        os.environ.setdefault(key, value)
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        namespace="memsweep-bench",
        log_to_driver=False,
        runtime_env={"env_vars": dict(WORKER_ENV)},
    )


@dataclass
class Timer:
    """Wall time of a block, with the load average around it (noise on a shared machine)."""

    started: float = field(default_factory=time.perf_counter)
    load_before: float = field(default_factory=lambda: os.getloadavg()[0])

    def done(self) -> dict[str, float]:
        return {
            "wall_s": time.perf_counter() - self.started,
            "load_before": self.load_before,
            "load_after": os.getloadavg()[0],
        }


def with_seconds(table: Any) -> Any:
    """A memsweep table (``ts``: UTC µs timestamps) → pandas, with ``t`` in epoch seconds."""
    import pyarrow as pa
    import pyarrow.compute as pc

    micros = pc.cast(table["ts"], pa.int64())
    return table.append_column("t", pc.divide(pc.cast(micros, pa.float64()), 1e6)).to_pandas()


def fit_watched(tuner: Any, callback: Any | None) -> Any:
    """``tuner.fit()`` with Tune's output on stderr (stdout carries the table), closing
    memsweep's ``MemoryCallback`` (when there is one) after the run, failed or not;
    returns Tune's ``ResultGrid``."""
    try:
        with contextlib.redirect_stdout(sys.stderr):
            return tuner.fit()
    finally:
        if callback is not None:
            callback.close()


def fit_one_trial(
    trainable: Any,
    param_space: dict[str, Any],
    *,
    name: str,
    work: Path,
    callback: Any | None,
    what: str,
    **run_config: Any,
) -> Any:
    """One Tune trial of ``trainable`` run to its end under ``work / "tune" / name``,
    watched by ``callback`` (memsweep's ``MemoryCallback``) or by nothing; returns its
    results (pandas) sorted by ``training_iteration``. ``run_config`` adds keyword
    arguments of ``tune.RunConfig``; RuntimeError naming ``what`` if the trial failed."""
    from ray import tune

    tuner = tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(reuse_actors=False),
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(work / "tune"),
            callbacks=[callback] if callback else [],
            verbose=0,
            **run_config,
        ),
    )
    result = fit_watched(tuner, callback)[0]
    if result.error is not None:
        raise RuntimeError(f"{what}: {result.error}")
    return result.metrics_dataframe.sort_values("training_iteration")


def memsweep_run(sweep: Path | str, storage: Path) -> None:
    """``memsweep run SWEEP --storage STORAGE`` in a subprocess from the repository root,
    as a user starts it (its output on this process's stderr, no inherited
    ``RAY_ADDRESS``: it starts its own Ray); RuntimeError if it exits non-zero."""
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "memsweep", "run", str(sweep), "--storage", str(storage)],
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
        stdout=sys.stderr,
        stderr=sys.stderr,
        check=False,
        timeout=3 * 3600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"memsweep run {sweep} exited {done.returncode}")

"""Analysis speed and time to answer.

*Analysis speed* reuses :mod:`bench_analysis` (a synthetic sweep with the real schema,
analysed in a fresh child process): wall time and peak RSS per size, and how the time
grows with the rows (a log-log slope of 1 is linear). The peak RSS is the analysing
process's ``VmHWM``, read from outside every 50 ms: ``bench_analysis`` reports the
child's ``ru_maxrss``, which on Linux carries over the parent's peak across ``exec`` and
so includes this benchmark's own memory.

*Time to answer* is the wall time of ``memsweep run sweeps/default.yaml`` (run here only
with ``--full``: about ten minutes; otherwise the last run in ``results/default`` is
read and marked as such) and the prediction error the analysis reaches on it: the
leave-one-out relative RMSE of its total-plateau model (``memsweep.analyze`` fits it;
each trial is predicted by the model fitted without it).
"""

from __future__ import annotations

import math
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from benchlib import REPO, Profile, Row, Stat, Timer, log, memsweep_run

GOAL_10M_S = 10.0
GOAL_SLOPE = 1.1


class ChildPeakWatcher:
    """Peak ``VmHWM`` of this process's descendants whose command line has ``marker``."""

    def __init__(self, marker: str, interval_s: float = 0.05) -> None:
        self.marker = marker
        self.interval_s = interval_s
        self.peaks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-peak-watch", daemon=True)

    def _loop(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            for child in me.children(recursive=True):
                try:
                    if self.marker not in " ".join(child.cmdline()):
                        continue
                    status = Path(f"/proc/{child.pid}/status").read_text()
                except (psutil.Error, OSError):
                    continue
                for line in status.splitlines():
                    if line.startswith("VmHWM:"):
                        hwm = int(line.split()[1]) * 1024
                        self.peaks[child.pid] = max(hwm, self.peaks.get(child.pid, 0))
            self._stop.wait(self.interval_s)

    def __enter__(self) -> ChildPeakWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    @property
    def peak_bytes(self) -> int | None:
        return max(self.peaks.values()) if self.peaks else None


def _rss_note(figures: dict[str, float]) -> str:
    maxrss, hwm = figures["peak_rss_bytes"], figures["vm_hwm_bytes"]
    note = f"VmHWM of the analysing process; bench_analysis's ru_maxrss: {maxrss / 1e6:.0f} MB"
    if math.isfinite(hwm) and maxrss > 1.05 * hwm:
        note += " (the benchmark's own peak, inherited across exec)"
    return note


def analysis_speed(profile: Profile, work: Path) -> tuple[list[Row], dict[str, Any]]:
    import bench_analysis

    timer = Timer()
    repeats = profile.analysis_repeats
    figures: dict[int, list[dict[str, float]]] = {n: [] for n in profile.analysis_rows}
    for repeat in range(repeats):
        for n in profile.analysis_rows:
            log(f"analysis: {n:,} rows (repeat {repeat + 1}/{repeats})")
            with ChildPeakWatcher("analyze_results") as watcher:
                out = bench_analysis.run_benchmark([n], workdir=work / "analysis")
            figures[n].append({**out[n], "vm_hwm_bytes": watcher.peak_bytes or math.nan})
    rows: list[Row] = []
    medians: dict[int, float] = {}
    """rows written → median time of the analysis proper (read, phases, models)."""
    for n, runs in figures.items():
        totals = [r["import_s"] + r["analysis_s"] + r["report_s"] for r in runs]
        stat = Stat.of(totals)
        assert stat is not None
        written = int(runs[0]["rows_written"])
        analysis = Stat.of(r["analysis_s"] for r in runs)
        assert analysis is not None
        medians[written] = analysis.median
        goal = ""
        status: Any = "info"
        if written >= 9_900_000 and written <= 10_100_000:
            goal = f"< {GOAL_10M_S:g} s"
            status = "met" if stat.high < GOAL_10M_S else "MISSED"
        rows.append(
            Row(
                key=f"analysis.rows_{n}",
                section="analysis",
                figure=f"memsweep.analyze on {written:,} sample rows (import + analysis + report)",
                tool="memsweep.analyze",
                unit="s",
                stat=stat,
                goal=goal,
                status=status,
                note=(
                    f"analysis alone {analysis.median:.2f} s "
                    f"({analysis.median / written * 1e9:.0f} ns/row), "
                    f"import {runs[0]['import_s']:.1f} s, report {runs[0]['report_s']:.1f} s, "
                    f"Parquet {runs[0]['data_bytes'] / 1e6:.0f} MB"
                ),
            )
        )
        rows.append(
            Row(
                key=f"analysis.rss_{n}",
                section="analysis",
                figure=f"peak RSS of the analysis, {written:,} rows",
                tool="memsweep.analyze",
                unit="bytes",
                stat=Stat.of(r["vm_hwm_bytes"] for r in runs),
                note=_rss_note(runs[0]),
            )
        )
    small, large = min(medians), max(medians)
    slope = math.log(medians[large] / medians[small]) / math.log(large / small)
    judged = any(n >= 9_900_000 for n in medians)
    rows.append(
        Row(
            key="analysis.scaling",
            section="analysis",
            figure=f"growth of analysis time with rows, {small:,} → {large:,} (log-log slope)",
            tool="memsweep.analyze",
            unit="x",
            stat=Stat.one(slope),
            goal=f"≤ {GOAL_SLOPE:g} (linear)",
            status="met" if slope <= GOAL_SLOPE else "MISSED",
            note="the analysis proper (read, phases, models); 1 = linear, below 1 = fixed costs "
            "still dominate"
            + ("" if judged else "; the 10M-row goal is judged only with 10M rows (not --smoke)"),
        )
    )
    return rows, {"runs": {str(n): r for n, r in figures.items()}, **timer.done()}


# -- time to answer ------------------------------------------------------------------------


def _sweep_wall_s(results_dir: Path) -> tuple[float | None, str]:
    """Wall time of a finished sweep folder: versions.json's start to the last trial end."""
    import pandas as pd

    from memsweep.spec import load_study
    from memsweep.store import open_results

    results = open_results(results_dir)
    trials = results.table("trials").to_pandas()
    created = results.versions().get("created")
    study_file = results_dir / "study.yaml"
    expected = len(load_study(study_file).points()) if study_file.exists() else None
    done = trials[trials["status"] == "terminated"]
    if trials.empty or created is None:
        return None, f"{results_dir} has no finished trials"
    if len(done) != len(trials) or (expected is not None and len(trials) < expected):
        return None, (
            f"{results_dir} is incomplete: {len(done)} of {expected or len(trials)} trials finished"
        )
    end = pd.to_datetime(done["ended_at"]).max()
    start = pd.Timestamp(datetime.fromisoformat(created))
    return float((end - start).total_seconds()), f"finished {end:%Y-%m-%d %H:%M} UTC"


def _prediction_error(results_dir: Path) -> tuple[Stat | None, str]:
    from memsweep.analyze import analyze_results
    from memsweep.errors import MemsweepError

    try:
        analysis = analyze_results(results_dir)
    except MemsweepError as exc:
        return None, f"not measured: {exc}"
    model = analysis.models.get("plateau")
    if model is None:
        reasons = "; ".join(analysis.models.errors) or "no plateau model fitted"
        return None, f"not measured: {reasons}"
    if not math.isfinite(model.loo_rel_error):
        return None, (
            f"not measured: leave-one-out error undefined on {model.n_trials} trials "
            "(a trial alone "
            "at its factor level, as in a one-at-a-time design, cannot be left out)"
        )
    return Stat.one(model.loo_rel_error), (
        f"LOO RMSE {model.loo_rmse_bytes / 1e6:.0f} MB over {model.n_trials} trials, "
        f"R² {model.r2:.3f}"
    )


def _run_default_sweep(work: Path) -> tuple[float, Path]:
    storage = work / "default-sweep"
    log("answer: memsweep run sweeps/default.yaml (about ten minutes)")
    started = time.perf_counter()
    memsweep_run("sweeps/default.yaml", storage)
    wall = time.perf_counter() - started
    return wall, storage


def time_to_answer(profile: Profile, work: Path) -> tuple[list[Row], dict[str, Any]]:
    timer = Timer()
    rows: list[Row] = []
    details: dict[str, Any] = {}
    for name, sweep in (
        ("default", "sweeps/default.yaml"),
        ("full_study", "sweeps/full_study.yaml"),
    ):
        folder: Path | None = REPO / "results" / name
        stat: Stat | None = None
        status: Any = "info"
        if name == "default" and profile.run_default_sweep:
            wall, folder = _run_default_sweep(work)
            stat, note = Stat.one(wall), "measured in this run"
        elif folder is not None and (folder / "trials.parquet").exists():
            wall_s, note = _sweep_wall_s(folder)
            if wall_s is None:
                status, folder = "not measured", None
            else:
                stat = Stat.one(wall_s)
                note = f"NOT this run: last run in results/{name}, {note}"
        else:
            status, folder = "not measured", None
            note = f"no results/{name}: run `memsweep run {sweep}`" + (
                " or `make bench BENCH_ARGS=--full`"
                if name == "default"
                else " (~1.5 h on 2 cores)"
            )
        rows.append(
            Row(
                key=f"answer.wall.{name}",
                section="answer",
                figure=f"wall time of memsweep run {sweep}",
                tool="memsweep",
                unit="s",
                stat=stat,
                status=status,
                note=note,
            )
        )
        error: Stat | None = None
        error_note = "not measured: no finished sweep to analyse"
        if folder is not None:
            log(f"answer: analysing {folder} for its prediction error")
            error, error_note = _prediction_error(folder)
        rows.append(
            Row(
                key=f"answer.prediction_error.{name}",
                section="answer",
                figure=f"held-out error of the plateau prediction, {sweep}",
                tool="memsweep.analyze",
                unit="fraction",
                stat=error,
                status="info" if error is not None else "not measured",
                note=error_note.removeprefix("not measured: ") if error is None else error_note,
            )
        )
        details[name] = {"folder": str(folder) if folder else None}
    return rows, {**details, **timer.done()}

"""Peak capture: how much of a short memory spike each tool records.

Each trial (a Tune function trainable, one per spike length and repeat, one at a time)
reports every ``iter_s`` seconds like a training loop; at a random moment after its
first quiet iterations it touches ``spike_bytes`` more (``numpy.ones``), holds them for
the spike length, and frees them. The process itself reads its ``VmRSS`` just before and
right after the allocation: that difference is the true spike. The spike's length is
the time it is held at full size; filling it comes first and is reported (on this VM,
new memory is backed by the host on first touch: 512 MiB take 0.2-1 s, so the 50 ms
spike has a long ramp, which helps any sampler). So the shortest length is also run
with a small spike (``peak_small_spike_bytes``, filled in milliseconds), watched by memsweep
only: node-wide tools cannot tell it from the node's noise. Three tools watch the same
trials at the same time:

- memsweep's callback at 10 Hz: its *VmHWM*-based peak (the kernel's high-water mark,
  read at every sample) and its *RSS-sample*-based peak (the largest sampled RSS during
  the spike), both minus the sampled RSS just before the spike;
- Tune's ``log_sys_usage``: ``perf/ram_util_percent`` in each result, the node's RAM %
  sampled every 0.7 s and averaged over the iteration; converted to bytes as
  ``percent × MemTotal``; the spike's figure is the largest iteration that overlaps it
  minus the last iteration before it;
- MLflow system metrics with MLflow's defaults (a sample every 10 s):
  ``system/system_memory_usage_megabytes`` (psutil's node ``used``); the spike's figure
  is the largest value sampled during it minus the last value sampled before it, and 0
  when no sample fell in it.

A tool's fraction is its figure ÷ the true spike. Node-wide tools also see every other
process on the machine (other people's Ray tests here): their fractions are noisy and
can exceed 100% or go below 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchlib import MiB, Profile, Row, Stat, Timer, fit_watched, log, with_seconds

ITER_S = 1.0
ITERATIONS = 5
QUIET_ITERATIONS = 2
FILL_ALLOWANCE_S = 0.3
GOAL_FRACTION = 0.99
TOOLS = {
    "memsweep_hwm": "memsweep VmHWM (10 Hz)",
    "memsweep_rss": "memsweep RSS samples (10 Hz)",
    "tune_log_sys_usage": "Tune log_sys_usage",
    "mlflow": "MLflow system metrics",
}


def spike_trial(config: dict[str, Any]) -> None:
    """Tune function trainable: quiet iterations, one spike at a random moment, quiet.

    Self-contained (Ray ships it by value; it imports what it needs inside). Reports
    ``t_report`` every iteration and, once it happened, the spike's marks: ``t_start``,
    ``t_full`` (all touched), ``t_freed``, ``rss_before`` and ``rss_peak`` (bytes).
    """
    import os
    import random
    import time

    import numpy as np
    from ray import tune

    def rss_bytes() -> int:
        with open("/proc/self/status", "rb") as status:  # noqa: PTH123
            for line in status:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def sleep_until(moment: float) -> None:
        time.sleep(max(0.0, moment - time.time()))

    config = {**config, **config.get("trial", {})}
    spike_s = float(config["spike_s"])
    iter_s = float(config["iter_s"])
    iterations = int(config["iterations"])
    rng = random.Random(int(config["seed"]))
    spike_bytes = int(config["spike_bytes"])
    time.sleep(float(config["settle_s"]))
    t0 = time.time()
    earliest = t0 + int(config["quiet_iterations"]) * iter_s
    latest = t0 + (iterations - 1) * iter_s - spike_s - float(config["fill_allowance_s"])
    start_at = rng.uniform(earliest, max(earliest, latest))
    marks: dict[str, float] = {}
    for index in range(1, iterations + 1):
        boundary = t0 + index * iter_s
        if not marks and start_at < boundary:
            sleep_until(start_at)
            marks["rss_before"] = rss_bytes()
            marks["t_start"] = time.time()
            spike = np.ones(spike_bytes, dtype=np.uint8)
            marks["t_full"] = time.time()
            marks["rss_peak"] = rss_bytes()
            sleep_until(marks["t_full"] + spike_s)
            del spike
            marks["t_freed"] = time.time()
        sleep_until(boundary)
        tune.report({"t_report": time.time(), "pid": os.getpid(), **marks})


def _tune_figure(frame: Any, marks: dict[str, float], total_bytes: int) -> float | None:
    """Tune's figure for the spike, bytes: the largest iteration during it minus the one before."""
    frame = frame.sort_values("training_iteration")
    ends = frame["t_report"].tolist()
    used = (frame["perf/ram_util_percent"] / 100 * total_bytes).tolist()
    starts = [float("-inf"), *ends[:-1]]
    before = [u for end, u in zip(ends, used, strict=True) if end <= marks["t_start"]]
    during = [
        u
        for start, end, u in zip(starts, ends, used, strict=True)
        if end >= marks["t_start"] and start <= marks["t_freed"]
    ]
    if not before or not during:
        return None
    return max(during) - before[-1]


def _tune_noise(frame: Any, marks: dict[str, float], total_bytes: int) -> float | None:
    """How much the node's used memory moved between the two last quiet iterations."""
    frame = frame.sort_values("training_iteration")
    quiet = frame[frame["t_report"] <= marks["t_start"]]["perf/ram_util_percent"].tolist()
    if len(quiet) < 2:
        return None
    return abs(quiet[-1] - quiet[-2]) / 100 * total_bytes


def _memsweep_figures(samples: Any, marks: dict[str, float]) -> tuple[float | None, float | None]:
    """(VmHWM-based, RSS-sample-based) spike in bytes from the trial process's samples."""
    times = samples["t"]
    window = samples[(times >= marks["t_start"] - 1.0) & (times <= marks["t_start"] - 0.02)]
    if window.empty:
        window = samples[times < marks["t_start"]].tail(1)
    if window.empty:
        return None, None
    baseline = float(window["rss_bytes"].median())
    after = samples[times >= marks["t_start"]]
    hwm = float(after["hwm_bytes"].max()) - baseline if len(after) else 0.0
    during = samples[(times >= marks["t_start"]) & (times <= marks["t_freed"])]
    rss = float(during["rss_bytes"].max()) - baseline if len(during) else 0.0
    return hwm, max(rss, 0.0)


def _mlflow_figure(readings: list[tuple[float, float]], marks: dict[str, float]) -> float | None:
    before = [used for t, used in readings if t < marks["t_start"]]
    during = [used for t, used in readings if marks["t_start"] <= t <= marks["t_freed"]]
    if not before:
        return None
    return max(during) - before[-1] if during else 0.0


def _run_trials(profile: Profile, work: Path) -> tuple[Any, str]:
    import ray
    from ray import tune

    import bench_peak
    from memsweep.collect.callback import MemoryCallback
    from memsweep.spec import parse_study

    # The benchmark folder is not installed in the workers: ship this module by value.
    ray.cloudpickle.register_pickle_by_value(bench_peak)
    study = parse_study(
        {
            "name": "bench-peak",
            "sampling": {"interval_s": 0.1, "full_interval_s": 1.0, "flush_interval_s": 1.0},
        }
    )
    uri = str(work / "memsweep")
    callback = MemoryCallback.for_study(study, uri)
    trials: list[dict[str, Any]] = []
    shortest = min(profile.peak_spike_lengths_s)
    for repeat in range(profile.peak_repeats):
        for index, length in enumerate(profile.peak_spike_lengths_s):
            trials.append({"spike_s": length, "repeat": repeat, "seed": 1000 * repeat + index})
        trials.append(
            {
                "spike_s": shortest,
                "repeat": repeat,
                "seed": 1000 * repeat + 99,
                "spike_bytes": profile.peak_small_spike_bytes,
                "small": True,
            }
        )

    tuner = tune.Tuner(
        tune.with_resources(bench_peak.spike_trial, {"cpu": 1}),
        param_space={
            "trial": tune.grid_search(trials),
            "spike_bytes": profile.peak_spike_bytes,
            "iter_s": ITER_S,
            "iterations": ITERATIONS,
            "quiet_iterations": QUIET_ITERATIONS,
            "settle_s": 1.0,
            "fill_allowance_s": FILL_ALLOWANCE_S,
            "log_sys_usage": True,
        },
        tune_config=tune.TuneConfig(max_concurrent_trials=1, reuse_actors=False),
        run_config=tune.RunConfig(
            name="peak",
            storage_path=str(work / "tune"),
            callbacks=[callback],
            verbose=0,
        ),
    )
    return fit_watched(tuner, callback), uri


def run(profile: Profile, work: Path, mlflow_venv: Path) -> tuple[list[Row], dict[str, Any]]:
    """Spike trials watched by memsweep, Tune and MLflow at once (Ray must be up)."""
    import pandas as pd
    import psutil
    import pyarrow.compute as pc

    import bench_mlflow
    from memsweep.store import open_results

    timer = Timer()
    mlflow_error = None
    sidecar = None
    try:
        python = bench_mlflow.ensure_mlflow(mlflow_venv, install=profile.install_mlflow)
        sidecar = bench_mlflow.MlflowSidecar.start(python, work / "mlflow")
    except bench_mlflow.MlflowUnavailable as exc:
        mlflow_error = str(exc)
        log(f"peak: MLflow not measured: {exc}")
    log(
        f"peak: {profile.peak_repeats} × {len(profile.peak_spike_lengths_s)} spike trials of "
        f"{profile.peak_spike_bytes / MiB:.0f} MiB, {profile.peak_repeats} of "
        f"{profile.peak_small_spike_bytes / MiB:.0f} MiB"
    )
    try:
        grid, uri = _run_trials(profile, work)
    finally:
        logged = None
        if sidecar is not None:
            try:
                logged = sidecar.finish()
            except bench_mlflow.MlflowUnavailable as exc:
                mlflow_error = str(exc)
                sidecar.kill()
    mlflow_readings = bench_mlflow.readings(logged) if logged else []
    total_bytes = psutil.virtual_memory().total
    samples_table = open_results(uri).table(
        "samples", columns=["ts", "pid", "rss_bytes", "hwm_bytes"]
    )
    spikes = []
    for result in grid:
        if result.error is not None:
            raise RuntimeError(f"spike trial failed: {result.error}")
        metrics = result.metrics
        marks = {
            k: float(metrics[k]) for k in ("t_start", "t_full", "t_freed", "rss_before", "rss_peak")
        }
        truth = marks["rss_peak"] - marks["rss_before"]
        pid = int(metrics["pid"])
        mine = with_seconds(samples_table.filter(pc.equal(samples_table["pid"], pid)))
        mine = mine.sort_values("t")
        hwm, rss = _memsweep_figures(mine, marks)
        tune_bytes = _tune_figure(result.metrics_dataframe, marks, total_bytes)
        noise = _tune_noise(result.metrics_dataframe, marks, total_bytes)
        mlflow_bytes = _mlflow_figure(mlflow_readings, marks) if logged else None
        spike_s = float(result.config["trial"]["spike_s"])
        spikes.append(
            {
                "spike_s": spike_s,
                "pid": pid,
                "true_bytes": truth,
                "fill_s": marks["t_full"] - marks["t_start"],
                "small": bool(result.config["trial"].get("small")),
                "held_s": marks["t_freed"] - marks["t_full"],
                "memsweep_hwm": None if hwm is None else hwm / truth,
                "memsweep_rss": None if rss is None else rss / truth,
                "tune_log_sys_usage": None if tune_bytes is None else tune_bytes / truth,
                "node_noise": None if noise is None else noise / truth,
                "mlflow": None if mlflow_bytes is None else mlflow_bytes / truth,
                "samples_during": int(
                    ((mine["t"] >= marks["t_start"]) & (mine["t"] <= marks["t_freed"])).sum()
                ),
            }
        )
    frame = pd.DataFrame(spikes)
    rows: list[Row] = []
    groups = [(length, False) for length in profile.peak_spike_lengths_s]
    groups.append((min(profile.peak_spike_lengths_s), True))
    for length, small in groups:
        mine = frame[(frame["spike_s"] == length) & (frame["small"] == small)]
        label = f"{length * 1000:.0f} ms"
        fill_ms = mine["fill_s"].median() * 1000
        true_mb = mine["true_bytes"].median() / 1e6
        size = f"{true_mb:.0f} MB" if small else ""
        for tool, name in TOOLS.items():
            if small and not tool.startswith("memsweep"):
                continue
            stat = Stat.of(mine[tool].tolist())
            goal = ""
            status: Any = "info"
            note = ""
            if tool.startswith("memsweep"):
                goal = f"≥ {GOAL_FRACTION:.0%} (worst spike)"
                status = "met" if stat is not None and stat.low >= GOAL_FRACTION else "MISSED"
                if tool == "memsweep_hwm":
                    note = f"true spike {true_mb:.0f} MB, filled in {fill_ms:.0f} ms (median)"
                else:
                    note = (
                        f"{mine['samples_during'].median():.0f} samples fell in fill + spike "
                        "(median)"
                    )
            elif tool == "mlflow" and mlflow_error is not None:
                status = "n/a"
                note = f"MLflow not measured: {mlflow_error}"
            elif tool == "mlflow":
                assert logged is not None
                note = (
                    f"MLflow {logged['mlflow_version']}, a sample every "
                    f"{logged['sampling_interval_s']:g} s (its default)"
                )
            elif tool == "tune_log_sys_usage":
                noise = Stat.of(mine["node_noise"].tolist())
                note = f"node RAM % every 0.7 s, averaged per {ITER_S:g} s iteration" + (
                    f"; the node moved {noise.median:.0%} of the spike between quiet iterations"
                    if noise is not None
                    else ""
                )
            if stat is None and status == "info":
                status = "n/a"
                note = f"no reading before the spike; {note}"
            rows.append(
                Row(
                    key=f"peak.{tool}.{length * 1000:.0f}ms" + (".small" if small else ""),
                    section="peak",
                    figure=f"fraction of a {size or 'big'} spike held {label}, recorded"
                    if small
                    else f"fraction of a {label} spike recorded",
                    tool=name,
                    unit="fraction",
                    stat=stat,
                    goal=goal,
                    status=status,
                    note=note,
                )
            )
    details = {
        "spike_bytes": profile.peak_spike_bytes,
        "iter_s": ITER_S,
        "spikes": spikes,
        "mlflow": {"error": mlflow_error, "logged": logged},
        **timer.done(),
    }
    return rows, details

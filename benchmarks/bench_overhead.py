"""Overhead: env steps per second of one RLlib trial with and without a memory monitor.

The trial is the base point of ``sweeps/default.yaml`` (the DQN every memsweep user
runs first), stopped after a fixed number of iterations. Four variants, each a separate
Tune run on the same local Ray, interleaved across repeats (A B C D A B C D …) so that
the drift of a shared machine hits all of them alike:

- ``none``: no monitor at all;
- ``memsweep_10hz`` / ``memsweep_50hz``: :class:`memsweep.collect.callback.MemoryCallback`
  sampling every 100 ms / 20 ms (USS/PSS every second, flush every 2 s);
- ``tune_log_sys_usage``: Tune's own monitor, switched on by the trial config key
  ``log_sys_usage`` (``Trainable.__init__`` starts a ``UtilMonitor`` thread in the
  trainable's process that reads node CPU and RAM % every 0.7 s).

Throughput is ``Δ env steps / Δ time_total_s`` from the first result to the last, so
neither the trial's set-up nor its first iteration's warm-up counts. The runs with
memsweep also yield what its sampler actor itself costs on a real Ray node (CPU and RSS
of the ``NodeSampler`` process, from its own samples).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchlib import REPO, Profile, Row, Stat, Timer, fit_one_trial, log, with_seconds

VARIANTS = ("none", "memsweep_10hz", "memsweep_50hz", "tune_log_sys_usage")
TOOL = {
    "none": "no monitor",
    "memsweep_10hz": "memsweep 10 Hz",
    "memsweep_50hz": "memsweep 50 Hz",
    "tune_log_sys_usage": "Tune log_sys_usage",
}
INTERVAL_S = {"memsweep_10hz": 0.1, "memsweep_50hz": 0.02}
GOAL_RATIO = 0.99


@dataclass(frozen=True)
class RunFigures:
    """What one Tune run of one variant gave."""

    variant: str
    repeat: int
    steps_per_s: float
    env_steps: int
    train_s: float
    wall_s: float
    driver_cpu_fraction: float
    """CPU seconds of this driver process (Tune's loop, memsweep's collector) per second."""
    results_uri: str | None


def overhead_study(profile: Profile) -> tuple[Any, Any]:
    """The default sweep's base point, stopped after ``overhead_iterations``."""
    from memsweep.spec import load_study, parse_study

    default = load_study(REPO / "sweeps" / "default.yaml")
    base = default.points()[0]
    data = default.model_dump(mode="json")
    data.update(
        name="bench-overhead",
        description="make bench: overhead of a memory monitor on the default base point",
        stop={"iterations": profile.overhead_iterations},
        storage=None,
    )
    data["factors"] = {
        "replay_capacity": [base.replay_capacity],
        "model": [base.model.model_dump(mode="json")],
        "num_workers": [base.num_workers],
        "framework": [base.framework],
    }
    data["search"] = {"mode": "grid", "design": "full"}
    study = parse_study(data, "bench-overhead")
    return study, study.points()[0]


def _with_interval(study: Any, interval_s: float) -> Any:
    from memsweep.spec import parse_study

    data = study.model_dump(mode="json")
    data["sampling"] = {"interval_s": interval_s, "full_interval_s": 1.0, "flush_interval_s": 2.0}
    return parse_study(data, "bench-overhead")


def run_once(variant: str, repeat: int, study: Any, point: Any, work: Path) -> RunFigures:
    """One Tune run of the trial under ``variant``."""
    from ray import tune

    from memsweep.collect.callback import MemoryCallback
    from memsweep.run.trainable import MemsweepTrainable

    config: dict[str, Any] = {
        "study": study.model_dump(mode="json"),
        "point": point.model_dump(mode="json"),
    }
    callback = None
    uri = None
    if variant == "tune_log_sys_usage":
        config["log_sys_usage"] = True
    elif variant in INTERVAL_S:
        uri = str(work / f"{variant}-{repeat}")
        callback = MemoryCallback.for_study(_with_interval(study, INTERVAL_S[variant]), uri)
    wall = time.perf_counter()
    cpu = time.process_time()
    frame = fit_one_trial(
        MemsweepTrainable,
        config,
        name=f"{variant}-{repeat}",
        work=work,
        callback=callback,
        what=f"overhead run {variant} #{repeat} failed",
        stop={"training_iteration": study.stop.iterations},
        checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False, checkpoint_frequency=0),
    )
    cpu = time.process_time() - cpu
    wall = time.perf_counter() - wall
    steps = frame["memsweep/env_steps"].to_numpy()
    total_s = frame["time_total_s"].to_numpy()
    if len(frame) < 2:
        raise RuntimeError(f"overhead run {variant}: {len(frame)} result(s), need 2")
    d_steps = float(steps[-1] - steps[0])
    d_time = float(total_s[-1] - total_s[0])
    return RunFigures(
        variant=variant,
        repeat=repeat,
        steps_per_s=d_steps / d_time,
        env_steps=int(steps[-1]),
        train_s=d_time,
        wall_s=wall,
        driver_cpu_fraction=cpu / wall,
        results_uri=uri,
    )


def sampler_actor_figures(uri: str) -> dict[str, float | None]:
    """CPU share, RSS and per-process round time of the NodeSampler in one memsweep run."""
    from memsweep.store import open_results

    results = open_results(uri)
    samples = with_seconds(
        results.table(
            "samples", columns=["ts", "pid", "role", "rss_bytes", "uss_bytes", "cpu_time_s"]
        )
    )

    def cpu_fraction_of(rows: Any) -> float | None:
        rows = rows.dropna(subset=["cpu_time_s"]).sort_values("t")
        span_s = rows["t"].iloc[-1] - rows["t"].iloc[0] if len(rows) >= 2 else 0.0
        if span_s < 2.0:
            return None
        return float(rows["cpu_time_s"].iloc[-1] - rows["cpu_time_s"].iloc[0]) / span_s

    mine = samples[samples["role"] == "memsweep"]
    cpu_fraction = cpu_fraction_of(mine)
    # Idle Ray workers in the same run: what any Ray process costs doing nothing.
    idle = [
        cpu_fraction_of(rows) for _, rows in samples[samples["role"] == "ray_worker"].groupby("pid")
    ]
    idle_known = [f for f in idle if f is not None]
    nodes = results.table(
        "node_samples", columns=["ts", "sample_cost_s", "num_processes"]
    ).to_pandas()
    nodes = nodes[nodes["num_processes"] > 0]
    per_process = (nodes["sample_cost_s"] / nodes["num_processes"]).median() if len(nodes) else None
    # The sampling thread's share: its rounds' wall time over the span they cover (wall
    # time bounds its CPU time from above); the rest of the actor's CPU is its Ray worker
    # runtime and the drains.
    span_s = (nodes["ts"].max() - nodes["ts"].min()).total_seconds() if len(nodes) >= 2 else 0.0
    rounds_fraction = float(nodes["sample_cost_s"].sum()) / span_s if span_s > 0 else None
    return {
        "cpu_fraction": cpu_fraction,
        "rounds_fraction": rounds_fraction,
        "idle_worker_cpu_fraction": float(statistics.median(idle_known)) if idle_known else None,
        "rss_bytes": float(mine["rss_bytes"].median()) if len(mine) else None,
        "uss_bytes": float(mine["uss_bytes"].dropna().median())
        if mine["uss_bytes"].notna().any()
        else None,
        "round_wall_us_per_process": None if per_process is None else float(per_process) * 1e6,
        "processes_per_round": float(nodes["num_processes"].median()) if len(nodes) else None,
    }


def run(profile: Profile, work: Path) -> tuple[list[Row], dict[str, Any]]:
    """Interleaved runs of every variant (Ray must be up: one local node of 2 CPUs)."""
    timer = Timer()
    study, point = overhead_study(profile)
    runs: list[RunFigures] = []
    total = profile.overhead_repeats * len(VARIANTS)
    for repeat in range(profile.overhead_repeats):
        for variant in VARIANTS:
            log(f"overhead: run {len(runs) + 1}/{total}: {TOOL[variant]} (repeat {repeat + 1})")
            figures = run_once(variant, repeat, study, point, work)
            log(f"overhead:   {figures.steps_per_s:.0f} env steps/s, {figures.wall_s:.0f} s wall")
            runs.append(figures)
    by_variant = {v: [r for r in runs if r.variant == v] for v in VARIANTS}
    throughput = {v: Stat.of(r.steps_per_s for r in rs) for v, rs in by_variant.items()}
    reference = throughput["none"]
    assert reference is not None
    noise = (reference.high - reference.low) / reference.median if reference.n > 1 else None
    noise_note = (
        f"no-monitor runs spread {noise * 100:.0f}% (min–max): differences below that are noise"
        if noise is not None
        else "one repeat: no noise estimate"
    )
    rows: list[Row] = []
    workload = (
        f"DQN {point.model.label} on {study.env.id}, {point.num_workers} env runners, "
        f"{point.framework}; {profile.overhead_iterations} iterations"
    )
    for variant in VARIANTS:
        stat = throughput[variant]
        ratio = None if stat is None else stat.median / reference.median
        goal = ""
        status: Any = "info"
        note = ""
        if variant == "memsweep_10hz":
            goal = f"≥ {GOAL_RATIO:.2f}× (≤ 1% loss)"
            status = "met" if ratio is not None and ratio >= GOAL_RATIO else "MISSED"
            paired = [
                f"{run.steps_per_s / none.steps_per_s:.2f}"
                for run, none in zip(by_variant[variant], by_variant["none"], strict=True)
            ]
            note = f"{noise_note}; per repeat vs the no-monitor run before it: {', '.join(paired)}"
        elif variant == "none":
            note = workload
        rows.append(
            Row(
                key=f"overhead.{variant}",
                section="overhead",
                figure="env steps/s of the same RLlib trial",
                tool=TOOL[variant],
                unit="steps/s",
                stat=stat,
                ratio=ratio,
                ratio_of="of no monitor",
                goal=goal,
                status=status,
                note=note,
            )
        )
    for variant in VARIANTS:
        rows.append(
            Row(
                key=f"overhead.driver_cpu.{variant}",
                section="overhead",
                figure="driver process CPU (Tune loop + memsweep collector)",
                tool=TOOL[variant],
                unit="%cpu",
                stat=Stat.of(100 * r.driver_cpu_fraction for r in by_variant[variant]),
            )
        )
    actor: dict[str, list[dict[str, float | None]]] = {}
    for variant in INTERVAL_S:
        actor[variant] = [
            sampler_actor_figures(r.results_uri) for r in by_variant[variant] if r.results_uri
        ]
    for variant, figures in actor.items():
        procs = Stat.of(f["processes_per_round"] for f in figures)
        where = f"real Ray node, ~{procs.median:.0f} processes" if procs else "real Ray node"
        idle = Stat.of(
            None if f["idle_worker_cpu_fraction"] is None else 100 * f["idle_worker_cpu_fraction"]
            for f in figures
        )
        actor_cpu = Stat.of(
            None if f["cpu_fraction"] is None else 100 * f["cpu_fraction"] for f in figures
        )
        rounds = Stat.of(
            None if f.get("rounds_fraction") is None else 100 * f["rounds_fraction"]
            for f in figures
        )
        rows.append(
            Row(
                key=f"sampler.actor_cpu.{variant}",
                section="sampler",
                figure=f"NodeSampler actor CPU ({where})",
                tool=TOOL[variant],
                unit="%cpu",
                stat=actor_cpu,
                goal="≤ 1% of a core" if variant == "memsweep_10hz" else "",
                status=(
                    ("met" if actor_cpu.median <= 1.0 else "MISSED")
                    if variant == "memsweep_10hz" and actor_cpu is not None
                    else "info"
                ),
                note="its own cpu_time_s over wall time (the primary overhead figure)"
                + (
                    f"; of which its sampling rounds (their wall time, all nodes): "
                    f"{rounds.median:.1f}%"
                    if rounds
                    else ""
                )
                + (
                    f"; an idle Ray worker in the same runs: {idle.median:.1f}% cpu" if idle else ""
                ),
            )
        )
        uss = Stat.of(f["uss_bytes"] for f in figures)
        rows.append(
            Row(
                key=f"sampler.actor_rss.{variant}",
                section="sampler",
                figure="NodeSampler actor RSS (Ray worker runtime included)",
                tool=TOOL[variant],
                unit="bytes",
                stat=Stat.of(f["rss_bytes"] for f in figures),
                note=f"USS {uss.median / 1e6:.0f} MB" if uss else "",
            )
        )
        rows.append(
            Row(
                key=f"sampler.actor_round.{variant}",
                section="sampler",
                figure="wall time of a sampling round ÷ processes in it (median round)",
                tool=TOOL[variant],
                unit="us",
                stat=Stat.of(f["round_wall_us_per_process"] for f in figures),
            )
        )
    details = {
        "workload": workload,
        "study": study.model_dump(mode="json"),
        "runs": [r.__dict__ for r in runs],
        "sampler_actor": actor,
        **timer.done(),
    }
    return rows, details

"""A synthetic sweep with known memory coefficients, written with the real ``ResultsWriter``.

Each trial has a trainable (which holds the replay buffer and its model copies) and
``num_workers`` env runners (one model copy each), plus Ray's own processes. Memory, in
PSS terms (what the analysis sums)::

    trainable  = base + framework_offset + 16 B × params + bytes_per_transition × stored
    env runner = runner_base[framework] + 4 B × params
    shared     = pages shared by the trial's processes, counted once in PSS

with a per-trial offset (trial-to-trial variation), per-sample noise, a set-up ramp,
planted leaks (bytes per hour, per role) and an optional spike that only VmHWM sees.
Samples come every ``interval_s``; USS/PSS every ``full_every``-th round.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np
import pyarrow as pa

from memsweep.analyze import Analysis, analyze_results
from memsweep.store import PROGRESS, SAMPLES, ResultsWriter

EPOCH_US = 1_750_000_000_000_000
OBS_BYTES = 4096
"""A 1024-float32 observation (``memsweep/Synthetic-v0`` with ``obs_shape: [1024]``)."""


def mlp_params(hidden: Sequence[int], d_in: int = 1024, d_out: int = 2) -> int:
    sizes = [d_in, *hidden, d_out]
    return sum((a + 1) * b for a, b in itertools.pairwise(sizes))


def label_params(label: str) -> int:
    return mlp_params([int(h) for h in label.split("x")])


@dataclass(frozen=True)
class Truth:
    """The planted coefficients (bytes)."""

    trainable_base_bytes: float = 900e6
    bytes_per_transition: float = 8_300.0
    trainable_bytes_per_param: float = 16.0
    runner_base_bytes: Mapping[str, float] = field(
        default_factory=lambda: {"torch": 250e6, "tf2": 420e6, "tf2-eager": 450e6}
    )
    runner_bytes_per_param: float = 4.0
    framework_offset_bytes: Mapping[str, float] = field(
        default_factory=lambda: {"torch": 0.0, "tf2": 300e6, "tf2-eager": 350e6}
    )
    shared_bytes: float = 120e6
    trial_sd_bytes: float = 6e6
    noise_sd_bytes: float = 2e6

    def per_worker_bytes(self, params: float, framework: str) -> float:
        return self.runner_base_bytes[framework] + self.runner_bytes_per_param * params

    def per_param_bytes(self, workers: float) -> float:
        return self.trainable_bytes_per_param + self.runner_bytes_per_param * workers

    def plateau_bytes(self, capacity: float, params: float, workers: int, framework: str) -> float:
        """Expected total PSS with a full buffer (no trial offset, no leak)."""
        return (
            self.trainable_base_bytes
            + self.framework_offset_bytes[framework]
            + self.trainable_bytes_per_param * params
            + self.bytes_per_transition * capacity
            + workers * self.per_worker_bytes(params, framework)
            + self.shared_bytes
        )


@dataclass(frozen=True)
class SynthTrial:
    """One synthetic trial."""

    trial_id: str
    replay_capacity: int
    model: str = "256x256"
    num_workers: int = 2
    framework: str = "torch"
    steps_per_s: float = 2500.0
    setup_s: float = 3.0
    plateau_s: float = 25.0
    """Seconds after the buffer is full (ignored when ``duration_s`` is set)."""

    duration_s: float | None = None
    leak_bytes_per_h: Mapping[str, float] = field(default_factory=dict)
    """Role → leak rate, in that role's first process, from the end of set-up."""

    status: str = "terminated"
    with_samples: bool = True
    report_replay_size: bool = True
    hidden_spike_bytes: float = 0.0
    """A trainable spike at 70 % of the run, between two samples: only VmHWM sees it."""

    @property
    def params(self) -> int:
        return label_params(self.model)

    @property
    def run_s(self) -> float:
        if self.duration_s is not None:
            return self.duration_s
        return self.setup_s + self.replay_capacity / self.steps_per_s + self.plateau_s


@dataclass(frozen=True)
class SynthSweep:
    path: Path | str
    trials: tuple[SynthTrial, ...]
    truth: Truth
    trial_offsets: Mapping[str, float]
    """The per-trial random offset added to the trainable (bytes)."""

    def expected_plateau(self, trial: SynthTrial) -> float:
        return self.truth.plateau_bytes(
            trial.replay_capacity, trial.params, trial.num_workers, trial.framework
        ) + self.trial_offsets.get(trial.trial_id, 0.0)


SYSTEM_PROCESSES = {"ray_system": 150e6, "driver": 300e6, "memsweep": 80e6}
"""Processes of no trial (RSS); their PSS is ``PSS_SHARE`` of it. Ray's own overhead is
``ray_system`` alone (0.9 × 150 MB = 135 MB per node); the driver (270 MB) and the sampler
(``memsweep``, 72 MB) are their own figures."""

PSS_SHARE = 0.9
"""PSS ÷ RSS of the processes of no trial."""


def complete_table(columns: Mapping[str, pa.Array], schema: pa.Schema, size: int) -> pa.Table:
    """A table of ``schema``: the given columns, nulls for the others (the schema grows)."""
    full = {f.name: columns.get(f.name, pa.nulls(size, f.type)) for f in schema}
    return pa.table(full).cast(schema)


def new_results(path: Path | str, head: str, interval_s: float, full_every: int) -> ResultsWriter:
    """A writer for a new synthetic results folder, with its ``study.yaml`` (``head``, then
    the sampling intervals) and ``versions.json``."""
    writer = ResultsWriter(path)
    writer.write_text(
        "study.yaml",
        f"{head}\nsampling:\n  interval_s: {interval_s}\n"
        f"  full_interval_s: {interval_s * full_every}\n",
    )
    writer.write_text("versions.json", json.dumps({"schema_version": 1}))
    return writer


def _ints(values: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    return pa.array(np.round(values).astype(np.int64), type=pa.int64(), mask=mask)


def write_sweep(
    path: Path | str,
    trials: Sequence[SynthTrial],
    *,
    truth: Truth | None = None,
    seed: int = 0,
    interval_s: float = 0.1,
    full_every: int = 10,
    progress_every_s: float = 1.0,
    two_nodes: bool = False,
    name: str = "synthetic",
) -> SynthSweep:
    """Write a results folder at ``path`` and return what was planted."""
    truth = truth or Truth()
    rng = np.random.default_rng(seed)
    writer = new_results(path, f"name: {name}\nalgorithm: DQN", interval_s, full_every)
    run_id = f"run-{seed}"
    trial_rows = []
    offsets: dict[str, float] = {}
    start_s = 0.0
    pid = 1000
    for trial in trials:
        offsets[trial.trial_id] = float(rng.normal(0, truth.trial_sd_bytes))
        run_s = trial.run_s
        n = int(run_s / interval_s)
        t = np.arange(n) * interval_s
        steps = np.maximum(t - trial.setup_s, 0.0) * trial.steps_per_s
        stored = np.minimum(steps, trial.replay_capacity)
        ramp = np.minimum(t / trial.setup_s, 1.0)
        leak_h = np.maximum(t - trial.setup_s, 0.0) / 3600
        full = (np.arange(n) % full_every) == 0
        processes = 1 + trial.num_workers
        share = truth.shared_bytes / processes
        samples = []
        peak_total = np.zeros(n)
        rss_total = np.zeros(n)
        for index in range(processes):
            role = "trainable" if index == 0 else "env_runner"
            if role == "trainable":
                private = (
                    ramp
                    * (
                        truth.trainable_base_bytes
                        + truth.framework_offset_bytes[trial.framework]
                        + truth.trainable_bytes_per_param * trial.params
                        + offsets[trial.trial_id]
                    )
                    + truth.bytes_per_transition * stored
                )
            else:
                private = ramp * truth.per_worker_bytes(trial.params, trial.framework)
            first_of_role = index in {0, 1}
            private = private + trial.leak_bytes_per_h.get(role, 0.0) * leak_h * first_of_role
            private = private + rng.normal(0, truth.noise_sd_bytes, n)
            rss = private + truth.shared_bytes
            hwm = np.maximum.accumulate(rss)
            if role == "trainable" and trial.hidden_spike_bytes:
                at = int(0.7 * n)
                hwm[at:] = np.maximum(hwm[at:], rss[at] + trial.hidden_spike_bytes)
            pss = private + share
            peak_total += pss
            rss_total += rss
            on_second = two_nodes and role == "env_runner" and index > processes // 2
            ts = EPOCH_US + np.round((start_s + t + (0.037 if on_second else 0.0)) * 1e6)
            pid += 1
            samples.append(
                {
                    "ts": pa.array(ts.astype(np.int64), type=pa.int64()).cast(
                        SAMPLES.field("ts").type
                    ),
                    "node_id": pa.array(["node1" if on_second else "node0"] * n),
                    "pid": pa.array(np.full(n, pid, dtype=np.int32)),
                    "ppid": pa.array(np.full(n, 1, dtype=np.int32)),
                    "create_time": pa.array(np.full(n, 1.75e9 + start_s)),
                    "name": pa.array([f"ray::{role}"] * n),
                    "trial_id": pa.array([trial.trial_id] * n),
                    "role": pa.array([role] * n),
                    "rss_bytes": _ints(rss),
                    "hwm_bytes": _ints(hwm),
                    "swap_bytes": _ints(np.zeros(n)),
                    "uss_bytes": _ints(private, ~full),
                    "pss_bytes": _ints(pss, ~full),
                }
            )
        # Ray's own processes live for the whole sweep: same pids in every trial.
        for system_pid, (role, size) in enumerate(SYSTEM_PROCESSES.items(), start=1):
            rss = size + rng.normal(0, 1e6, n)
            samples.append(
                {
                    "ts": pa.array(
                        (EPOCH_US + np.round((start_s + t) * 1e6)).astype(np.int64)
                    ).cast(SAMPLES.field("ts").type),
                    "node_id": pa.array(["node0"] * n),
                    "pid": pa.array(np.full(n, system_pid, dtype=np.int32)),
                    "create_time": pa.array(np.full(n, 1.75e9)),
                    "trial_id": pa.nulls(n, pa.string()),
                    "role": pa.array([role] * n),
                    "rss_bytes": _ints(rss),
                    "hwm_bytes": _ints(np.maximum.accumulate(rss)),
                    "pss_bytes": _ints(rss * PSS_SHARE, ~full),
                    "uss_bytes": _ints(rss * 0.8, ~full),
                }
            )
        if trial.with_samples:
            for columns in samples:
                columns["run_id"] = pa.array([run_id] * len(columns["ts"]))
                writer.append("samples", complete_table(columns, SAMPLES, len(columns["ts"])))
            p_t = np.arange(trial.setup_s + progress_every_s, run_s, progress_every_s)
            p_steps = np.maximum(p_t - trial.setup_s, 0.0) * trial.steps_per_s
            p_stored = np.minimum(p_steps, trial.replay_capacity)
            progress = {
                "ts": pa.array((EPOCH_US + np.round((start_s + p_t) * 1e6)).astype(np.int64)).cast(
                    PROGRESS.field("ts").type
                ),
                "trial_id": pa.array([trial.trial_id] * len(p_t)),
                "run_id": pa.array([run_id] * len(p_t)),
                "iteration": pa.array(np.arange(1, len(p_t) + 1, dtype=np.int64)),
                "env_steps": _ints(p_steps),
                "replay_size": _ints(p_stored)
                if trial.report_replay_size
                else pa.nulls(len(p_t), pa.int64()),
                "time_total_s": pa.array(p_t),
                "trial_rss_bytes": _ints(np.interp(p_t, t, rss_total)),
                "trial_peak_bytes": _ints(np.interp(p_t, t, np.maximum.accumulate(rss_total))),
            }
            writer.append("progress", complete_table(progress, PROGRESS, len(p_t)))
        trial_rows.append(
            {
                "trial_id": trial.trial_id,
                "study": name,
                "algorithm": "DQN",
                "env": "memsweep/Synthetic-v0",
                "api_stack": "new" if trial.framework == "torch" else "old",
                "replay_capacity": trial.replay_capacity,
                "model": trial.model,
                "num_workers": trial.num_workers,
                "framework": trial.framework,
                "repeat": 0,
                "seed": seed,
                "model_params": trial.params,
                "obs_bytes": OBS_BYTES,
                "built_replay_capacity": trial.replay_capacity,
                "built_num_env_runners": trial.num_workers,
                "run_id": run_id,
                "status": trial.status,
                "error": "RayOutOfMemoryError: worker killed" if trial.status == "error" else None,
                "iterations": int(run_s),
                "env_steps": int(steps[-1]),
                "peak_bytes": int(peak_total.max()),
            }
        )
        start_s += run_s + 2.0
    writer.replace("trials", trial_rows)
    return SynthSweep(path, tuple(trials), truth, offsets)


FACTORIAL_CAPACITIES = (10_000, 20_000, 50_000)
FACTORIAL_MODELS = ("64x64", "256x256", "1024x1024")
FACTORIAL_WORKERS = (1, 2, 4)
FACTORIAL_FRAMEWORKS = ("torch", "tf2")


def factorial_trials() -> list[SynthTrial]:
    """The full 3 × 3 × 3 × 2 design, plateau reached in every trial."""
    trials: list[SynthTrial] = []
    for cap in FACTORIAL_CAPACITIES:
        for model in FACTORIAL_MODELS:
            for workers in FACTORIAL_WORKERS:
                for framework in FACTORIAL_FRAMEWORKS:
                    trial_id = f"t{len(trials):03d}"
                    trials.append(SynthTrial(trial_id, cap, model, workers, framework))
    return trials


# Scenarios shared by the test modules. Each is written once per test session (under
# pytest's session temp dir) and analysed once: the cache below is keyed by folder.
_CACHE: dict[Path, Any] = {}
T = TypeVar("T")


def _once(key: Path, build: Callable[[], T]) -> T:
    if key not in _CACHE:
        _CACHE[key] = build()
    return cast("T", _CACHE[key])


def factorial_sweep(root: Path) -> SynthSweep:
    """54 trials over all four factors, every one reaching its plateau; no leak."""
    path = root / "factorial"
    return _once(path, lambda: write_sweep(path, factorial_trials(), seed=0))


HELD_BACK = SynthTrial("held_back", 500_000, "256x256", 2, "torch", steps_per_s=10_000)
"""10 × the largest capacity of the factorial sweep; a separate folder."""


def held_back_sweep(root: Path) -> SynthSweep:
    path = root / "held_back"
    return _once(path, lambda: write_sweep(path, [HELD_BACK], seed=100))


TRAINABLE_LEAK_BYTES_PER_H = 400e6
RUNNER_LEAK_BYTES_PER_H = 200e6
SPIKE_BYTES = 150e6
LEAK_TRIALS = (
    SynthTrial(
        "leak_trainable",
        10_000,
        plateau_s=300,
        leak_bytes_per_h={"trainable": TRAINABLE_LEAK_BYTES_PER_H},
    ),
    SynthTrial(
        "leak_runner",
        20_000,
        plateau_s=300,
        leak_bytes_per_h={"env_runner": RUNNER_LEAK_BYTES_PER_H},
    ),
    SynthTrial("clean", 10_000, steps_per_s=500, plateau_s=300, hidden_spike_bytes=SPIKE_BYTES),
    SynthTrial("no_plateau", 1_000_000, duration_s=60),
    SynthTrial("no_plateau_no_replay_size", 1_000_000, duration_s=60, report_replay_size=False),
    SynthTrial("crashed", 20_000, status="error", with_samples=False),
)
"""Long plateaus with planted leaks, a clean trial with a spike only VmHWM sees, two
trials whose buffer never fills, and one that crashed before its first sample. One
model, two workers, torch: single-valued factors."""


def leak_sweep(root: Path) -> SynthSweep:
    path = root / "leaks"
    return _once(path, lambda: write_sweep(path, LEAK_TRIALS, seed=3))


def analysis_of(sweep: SynthSweep) -> Analysis:
    """The sweep's analysis, computed once per session."""
    assert isinstance(sweep.path, Path)
    return _once(sweep.path / "__analysis__", lambda: analyze_results(sweep.path))


def capacity_sweep(root: Path) -> SynthSweep:
    """Four clean trials varying only the replay capacity: small and quick to analyse."""
    path = root / "capacity"
    trials = [SynthTrial(f"c{cap}", cap, plateau_s=30) for cap in (5_000, 10_000, 20_000, 40_000)]
    return _once(path, lambda: write_sweep(path, trials, seed=11))

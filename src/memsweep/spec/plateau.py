"""How long a trial needs to reach a measurable plateau: env steps and minutes, estimated.

A trial has what the analysis needs once its replay buffer is full and a plateau of
``stop.plateau_env_steps`` env steps follows (without a buffer: that many env steps after
its first result). A buffer fills at one transition per sampled env step, so the env
steps to the end of the plateau are ``capacity + plateau_env_steps``; the minutes follow
from a sampling speed per algorithm, env and framework, measured on this project's
machine (:data:`STEPS_PER_S`), plus a set-up allowance.

``memsweep validate`` prints the estimate per trial and warns when a stop rule cannot
get there (a time cap shorter than the estimate, an env-step or iteration limit before
the plateau, or no plateau rule at all); :func:`time_cap_s` derives the guard a sweep
uses when ``stop.seconds`` is not given.

Pure functions of the study; no Ray.
"""

from __future__ import annotations

from dataclasses import dataclass

from memsweep.spec.point import TrialPoint
from memsweep.spec.study import REPLAY_ALGORITHMS, Study

STEPS_PER_S: dict[tuple[str, str, str, bool], float] = {
    # (algorithm, env kind, framework, remote env runners?) → env steps per second, on
    # the 2-core, 24 GB machine, at memsweep's default training settings
    # (training_intensity 0.25, train_batch_size 32). DQN vector torch/tf2: the median of
    # env steps / Tune's time_total_s over the trials of results/reference-default (the
    # default study, 4 KiB observations, nearly idle: torch 720-937 with no remote runner,
    # 527-609 with two; tf2 871-907; results/reference-heldback's torch trials 781-908
    # agree). Others: the lower figure of results/claims-2cpu-24gb/* (1-4 envs per
    # runner, load average 4-8). SAC on Pendulum-v1, 1 env per runner: a measure run on
    # 2026-11-30 under load average 15-23 (1,024 env steps per iteration, 67 s each with
    # no runner, 110 s with one). PPO: the lower figures of sweeps/examples
    # (ppo_train_batch and evaluation with no runner, 550-1,100 env steps/s; multi_agent
    # with one, 350-360) run on 2026-11-30 at load average 5-7, batches of 500-8,000, one
    # SGD pass.
    ("DQN", "vector", "torch", False): 900.0,
    ("DQN", "vector", "torch", True): 570.0,
    ("DQN", "vector", "tf2", False): 890.0,
    ("DQN", "vector", "tf2", True): 340.0,
    ("DQN", "vector", "tf2-eager", False): 210.0,
    ("DQN", "vector", "tf2-eager", True): 130.0,
    ("DQN", "image", "torch", False): 150.0,
    ("DQN", "image", "torch", True): 150.0,
    ("PPO", "vector", "torch", False): 550.0,
    ("PPO", "vector", "torch", True): 350.0,
    ("SAC", "vector", "torch", False): 15.0,
    ("SAC", "vector", "torch", True): 5.0,
}
"""Env steps per second by (algorithm, ``vector``/``image`` observations, framework,
whether the trial has remote env runners). A combination not listed borrows the
nearest one (same algorithm, else DQN; torch's figure halved for TensorFlow), and the
estimate says so."""

SETUP_S = 5.0
"""Seconds from one trial's end to the next one's first env step: Tune starts the trial's
actor and builds its algorithm (results/reference-default's events, nearly idle: 4.1-5.7 s
per trial without remote env runners; results/reference-heldback: 5.8-8.1 s)."""

SETUP_PER_RUNNER_S = 2.5
"""Extra set-up seconds per remote env runner, each a new process importing RLlib
(results/reference-default: 9.3-9.8 s for trials with two runners, against ~5 s)."""

SWEEP_START_S = 5.0
"""Seconds before a sweep's first trial starts: the driver starts Ray and memsweep's
sampler (results/reference-default: 8.8 s from ``versions.json`` to the first trial's
start, of which :data:`SETUP_S` is the trial's own)."""

ESTIMATE_TOLERANCE = 0.15
"""How close a sweep's estimate is to its duration on a nearly idle machine, as a
fraction: tests/cli/test_validate_estimate.py checks :func:`sweep_seconds` of the
default study against results/reference-default. A loaded machine is slower (the same
sweep took 23 min at a load average of 9-58, results/reference-loaded); the time guard
(:data:`GUARD_FACTOR`) allows for that, the estimate does not."""

GUARD_FACTOR = 30.0
"""A derived time cap is this many times the estimated training time. The guard only
stops a trial that would never end (a hung env, a stalled learner), never one that is
merely slowed by other work: the default sweep's first trial on this project's 2-core
machine at a load average of 30 sampled 58 env steps/s against the 1,200 of the table
(20× slower), and a 10× guard stopped it 5,000 env steps into a 15,000-step plateau."""


@dataclass(frozen=True)
class PlateauEstimate:
    """One trial's way to a measurable plateau."""

    point: TrialPoint
    env_steps: int
    """Env steps sampled by the end of the plateau: capacity + plateau (or the plateau)."""
    steps_per_s: float
    """Sampling speed assumed (:data:`STEPS_PER_S`)."""
    seconds: float
    """Estimated wall time, set-up included."""
    measured: bool
    """False when the speed is borrowed from another combination."""
    warning: str | None
    """Why the study's stop rule cannot get this trial to its plateau; None if it can."""


def _env_kind(study: Study) -> str:
    shape = study.env.obs_shape
    return "image" if study.env.is_atari or (shape is not None and len(shape) >= 2) else "vector"


def steps_per_s(study: Study, point: TrialPoint) -> tuple[float, bool]:
    """(env steps per second, whether measured) for ``point``'s algorithm, env, framework."""
    kind, remote = _env_kind(study), point.num_workers > 0
    key = (study.algorithm, kind, point.framework, remote)
    if key in STEPS_PER_S:
        return STEPS_PER_S[key], True
    for algorithm in (study.algorithm, "DQN"):
        for framework in (point.framework, "torch"):
            for env_kind in (kind, "vector"):
                found = STEPS_PER_S.get((algorithm, env_kind, framework, remote))
                if found is not None:
                    slower = 0.5 if framework != point.framework else 1.0
                    return found * slower, False
    return STEPS_PER_S[("DQN", "vector", "torch", remote)], False


def needed_env_steps(study: Study, point: TrialPoint) -> int:
    """Env steps the trial runs: to the end of its plateau (buffer capacity +
    ``stop.plateau_env_steps``); without a plateau rule, to ``stop.env_steps`` (or to a
    full buffer when that is not set either)."""
    fill = point.replay_capacity if study.algorithm in REPLAY_ALGORITHMS else 0
    if study.stop.plateau_env_steps is not None:
        return fill + study.stop.plateau_env_steps
    return study.stop.env_steps if study.stop.env_steps is not None else fill


def estimate(study: Study, point: TrialPoint) -> PlateauEstimate:
    """The env steps and seconds ``point`` needs, and a warning when the stop rule
    stops it before (see the module docstring)."""
    speed, measured = steps_per_s(study, point)
    steps = needed_env_steps(study, point)
    seconds = SETUP_S + SETUP_PER_RUNNER_S * point.num_workers + steps / speed
    stop = study.stop
    warning = None
    replay = study.algorithm in REPLAY_ALGORITHMS
    if (
        stop.plateau_env_steps is None
        and replay
        and (stop.env_steps is None or stop.env_steps <= point.replay_capacity)
    ):
        warning = (
            "no plateau: its buffer fills after "
            f"{point.replay_capacity:,} env steps, and the stop rule "
            + (
                f"ends it at {stop.env_steps:,}"
                if stop.env_steps is not None
                else "does not count env steps"
            )
            + "; set stop.plateau_env_steps"
        )
    elif stop.env_steps is not None and stop.plateau_env_steps and stop.env_steps < steps:
        warning = (
            f"stop.env_steps {stop.env_steps:,} ends it before its plateau ({steps:,} env "
            "steps); remove it or raise it"
        )
    elif stop.seconds is not None and stop.seconds < steps / speed:
        warning = (
            f"stop.seconds {stop.seconds:g} ends it before its plateau (about "
            f"{steps / speed:.0f} s of training at {speed:,.0f} env steps/s); raise it "
            "or leave it out to get a guard derived from this estimate"
        )
    return PlateauEstimate(point, steps, speed, seconds, measured, warning)


def sweep_seconds(study: Study, points: list[TrialPoint] | None = None) -> float:
    """Estimated wall time of a whole grid sweep, seconds, on a nearly idle machine: Ray's
    start (:data:`SWEEP_START_S`) plus every trial's :func:`estimate` (trials run one
    after another on this 2-core machine). Within :data:`ESTIMATE_TOLERANCE` of the
    default study's reference run."""
    points = study.points() if points is None else points
    return SWEEP_START_S + sum(estimate(study, point).seconds for point in points)


def time_cap_s(study: Study, point: TrialPoint) -> float | None:
    """The guard on ``point``'s training time (Tune's ``time_total_s``, set-up not
    included), seconds: ``stop.seconds`` when given, else :data:`GUARD_FACTOR` × the
    estimated training time when ``stop.plateau_env_steps`` is set; None when neither."""
    if study.stop.seconds is not None:
        return study.stop.seconds
    if study.stop.plateau_env_steps is None:
        return None
    return GUARD_FACTOR * needed_env_steps(study, point) / steps_per_s(study, point)[0]

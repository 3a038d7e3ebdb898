"""Checks of a valid sweep against the runtime it would run on, before Ray starts.

A sweep file can be well formed and still fail later or never run: an env id gymnasium
does not know, trials that need more CPUs or memory than the machine has, observations
or replay buffers larger than its memory. :func:`runtime_findings` answers those from
gymnasium's registry and a :class:`Machine` (this one, or a cluster's totals the caller
read), without importing Ray (the spec stage never does).

Memory estimates are lower bounds built from measured figures, named where they are
defined; a trial whose lower bound exceeds the machine's memory cannot run (an error),
one whose bound exceeds the memory now available may be killed (a warning).
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import psutil

from memsweep.errors import SpecError
from memsweep.spec.env import EnvSpec
from memsweep.spec.study import Study
from memsweep.units import format_bytes

ENV_RUNNER_BYTES = 382_000_000
"""Memory one more RLlib env runner process adds (PSS, bytes): +382 MB (337–427 MB, 95 %)
in the claims study on a 2-CPU 24 GB machine (``results/claims-2cpu-24gb/claims.md``,
"Each parallel environment (env runner) adds its own state")."""

TRAINABLE_BYTES = 470_000_000
"""Median PSS of the trainable process (bytes) in the same study's ``workers`` sweep
(``results/claims-2cpu-24gb/workers``, samples with role ``trainable``)."""

DRIVER_BYTES = 890_000_000
"""Median PSS of the sweep's driver (Tune, memsweep's collector; bytes) in that sweep:
one per machine, whatever the trials."""

SYNTHETIC_ID = "memsweep/Synthetic-v0"
"""memsweep's own env (:mod:`memsweep.run.envs`), not in gymnasium's registry."""

_DTYPE_BYTES = {"float32": 4, "uint8": 1}
_ATARI_OBS_BYTES = 84 * 84 * 4
"""An ALE frame stack as RLlib's Atari wrapping stores it: 84×84 grey uint8, 4 deep."""


@dataclass(frozen=True)
class Machine:
    """What a sweep would run on: one machine, or a cluster's totals."""

    cpus: float
    """CPUs Ray can place work on (logical; a cluster's sum)."""

    memory_bytes: int
    """Physical memory, bytes (a cluster's sum; a trial needs it on one node)."""

    available_bytes: int
    """Memory free for new processes now, bytes (psutil's ``available``)."""

    where: str
    """How messages name it: ``this machine`` or ``the cluster at ADDRESS``."""


def local_machine() -> Machine:
    """This machine: the CPUs this process may use (its affinity) and psutil's memory."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    memory = psutil.virtual_memory()
    return Machine(float(cpus or 1), int(memory.total), int(memory.available), "this machine")


@dataclass(frozen=True)
class Finding:
    """One thing the runtime check found."""

    level: Literal["error", "warning"]
    """``error``: the sweep cannot run as written; ``warning``: it may fail."""

    message: str
    """One line naming the key, the value, the figure and the fix."""


def check_env_id(env: EnvSpec) -> Finding | None:
    """The env id is memsweep's own, an entry point (``pkg.mod:Class``, checked where it
    is imported), or in gymnasium's registry (``ALE/*`` after ``import ale_py`` registers them); otherwise an
    error with the nearest registered names."""
    env_id = env.id
    if env_id == SYNTHETIC_ID:
        return None
    if ":" in env_id:
        # An entry point (pkg.mod:Class, envs/x.py:Class) is the author's code, imported
        # and checked by memsweep.run.rllib_check; gymnasium's registry does not hold it.
        return None
    import gymnasium as gym

    if env_id.startswith("ALE/"):
        try:
            import ale_py
        except ImportError:
            return Finding(
                "error", f"env.id: {env_id} needs ale-py: pip install 'gymnasium[atari]'"
            )
        gym.register_envs(ale_py)
    if env_id in gym.registry:
        return None
    names = [*gym.registry, SYNTHETIC_ID]
    close = difflib.get_close_matches(env_id, names, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else "see gymnasium.pprint_registry()"
    return Finding("error", f"env.id: {env_id!r} is not a registered gymnasium env: {hint}")


def observation_bytes(env: EnvSpec) -> int | None:
    """Bytes of one observation as stored, where the sweep file fixes it (memsweep's
    synthetic env, ALE frame stacks); None for other envs (known only once built)."""
    if env.is_synthetic and env.obs_shape:
        return math.prod(env.obs_shape) * _DTYPE_BYTES[env.obs_dtype]
    if env.is_atari and env.atari_preprocessing:
        return _ATARI_OBS_BYTES
    return None


def replay_bytes(study: Study, capacity: int, obs_bytes: int) -> int:
    """Lower bound of a full replay buffer's observations: the old API stack stores each
    transition's obs and next obs (2×), the new stack's episode buffer each obs once."""
    copies = 1 if "torch" in study.factors.framework and study.api_stack != "old" else 2
    return capacity * obs_bytes * copies


def runtime_findings(study: Study, machine: Machine) -> list[Finding]:
    """Everything :func:`check_env_id` and the resource and size checks find, errors first."""
    findings: list[Finding] = []
    env = check_env_id(study.env)
    if env is not None:
        findings.append(env)
    resources = study.resources
    workers = max(study.factors.num_workers)
    cpus = resources.cpus_per_trainable + workers * resources.cpus_per_env_runner
    if cpus > machine.cpus:
        findings.append(
            Finding(
                "error",
                f"resources: a trial with {workers} env runners asks for {cpus:g} CPUs "
                f"(cpus_per_trainable {resources.cpus_per_trainable:g} + {workers} × "
                f"cpus_per_env_runner {resources.cpus_per_env_runner:g}) but {machine.where} "
                f"has {machine.cpus:g}: Ray would never place it; lower cpus_per_env_runner "
                "or num_workers",
            )
        )
    obs = observation_bytes(study.env)
    capacity = max(study.factors.replay_capacity)
    buffer = replay_bytes(study, capacity, obs) if obs is not None else 0
    if obs is not None and obs > machine.memory_bytes:
        findings.append(
            Finding(
                "error",
                f"env: one observation is {format_bytes(obs)}, more than {machine.where}'s "
                f"{format_bytes(machine.memory_bytes)}: shrink env.obs_shape",
            )
        )
        return findings
    trial = DRIVER_BYTES + TRAINABLE_BYTES + workers * ENV_RUNNER_BYTES + buffer
    parts = (
        f"driver {format_bytes(DRIVER_BYTES)} + trainable {format_bytes(TRAINABLE_BYTES)} + "
        f"{workers} env runners × {format_bytes(ENV_RUNNER_BYTES)}"
        + (f" + a {capacity:,}-transition buffer of {format_bytes(buffer)}" if buffer else "")
    )
    if trial > machine.memory_bytes:
        findings.append(
            Finding(
                "error",
                f"memory: the largest trial needs at least {format_bytes(trial)} ({parts}) but "
                f"{machine.where} has {format_bytes(machine.memory_bytes)}: lower "
                "factors.num_workers or factors.replay_capacity",
            )
        )
    elif trial > machine.available_bytes:
        findings.append(
            Finding(
                "warning",
                f"memory: the largest trial needs at least {format_bytes(trial)} ({parts}); "
                f"{machine.where} has {format_bytes(machine.available_bytes)} available now: "
                "it may be OOM-killed",
            )
        )
    return sorted(findings, key=lambda f: f.level != "error")


def check_runtime(
    study: Study, source: str, machine: Machine | None, warn: Callable[[str], None]
) -> None:
    """Raise :class:`~memsweep.errors.SpecError` with every error (one line each, naming
    ``source``); hand each warning to ``warn``. ``machine`` None checks the env id only
    (a cluster the caller cannot read before Ray starts)."""
    if machine is None:
        found = check_env_id(study.env)
        findings = [found] if found is not None else []
    else:
        findings = runtime_findings(study, machine)
    errors = [f"{source}: {f.message}" for f in findings if f.level == "error"]
    for finding in findings:
        if finding.level == "warning":
            warn(f"{source}: {finding.message}")
    if errors:
        raise SpecError("\n".join(errors))


def first_difference(old: object, new: object, where: str = "") -> str | None:
    """The dotted key where two loaded YAML documents first differ (None if equal)."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in [*old, *(k for k in new if k not in old)]:
            found = first_difference(
                old.get(key), new.get(key), f"{where}.{key}" if where else str(key)
            )
            if found is not None:
                return found
        return None
    return None if old == new else (where or "(top level)")


def check_same_sweep(study: Study, existing_text: str | None, folder: str) -> None:
    """Refuse to run ``study`` into ``folder`` when its ``study.yaml`` (``existing_text``)
    holds another sweep: :class:`~memsweep.errors.SpecError` naming the first differing
    key and the three ways out. None (no study.yaml yet) passes."""
    if existing_text is None:
        return
    import yaml

    try:
        existing = yaml.safe_load(existing_text)
    except yaml.YAMLError:
        existing = None
    difference = first_difference(existing, study.model_dump(mode="json"))
    if difference is None:
        return
    raise SpecError(
        f"{folder} holds another sweep (its study.yaml differs at {difference}): "
        "give --resume to continue that one, or a new name: or --storage for this one"
    )

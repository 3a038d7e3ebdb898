"""The per-trial settings that are not studied factors: when a trial stops, the
resources it reserves, algorithm settings and how often memory is sampled."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_serializer, field_validator, model_validator

from memsweep import result_keys as keys
from memsweep.result_keys import TuneResult
from memsweep.spec.base import Frozen
from memsweep.units import parse_bytes


class StopSpec(Frozen):
    """When a trial ends: whichever limit comes first. At least one is required, and a
    sweep file must have ``stop:`` (``validate`` and ``run`` refuse one without it).

    For a memory study, stop on ``plateau_env_steps``: a trial then runs until it has
    what the analysis needs (its buffer full, then a plateau long enough to measure),
    however fast the machine samples; ``seconds`` stays as a guard, and a trial it stops
    is reported (``trials.parquet`` ``stop_reason: time_cap``, the end-of-run summary).
    ``memsweep validate`` estimates each trial's env steps and minutes to its plateau."""

    plateau_env_steps: Annotated[int, Field(gt=0)] | None = None
    """Env steps to run after the replay buffer first holds its capacity (the plateau);
    for an algorithm without a buffer, after the first result."""

    iterations: Annotated[int, Field(gt=0)] | None = None
    """Tune training iterations (one ``Algorithm.train()`` each)."""

    env_steps: Annotated[int, Field(gt=0)] | None = None
    """Environment steps sampled over the trial's lifetime."""

    seconds: Annotated[float, Field(gt=0)] | None = None
    """Training time of the trial (Tune's ``time_total_s``; set-up not included): a
    guard against a slow or loaded machine, not the way to end a memory study's trial.
    Left out next to ``plateau_env_steps``, each trial gets a guard of 30× its estimated
    training time (:mod:`memsweep.spec.plateau`)."""

    @model_validator(mode="after")
    def _one_limit(self) -> StopSpec:
        if (
            self.iterations is None
            and self.env_steps is None
            and self.seconds is None
            and self.plateau_env_steps is None
        ):
            raise ValueError(
                "set at least one of plateau_env_steps, iterations, env_steps, seconds"
            )
        return self

    def limits(self) -> dict[str, float]:
        """Tune result key → limit: a trial stops once ``result[key] >= limit``."""
        derived_cap = 1 if self.seconds is None and self.plateau_env_steps is not None else None
        pairs = (
            (keys.PLATEAU_ENV_STEPS, self.plateau_env_steps),
            (keys.ENV_STEPS, self.env_steps),
            ("training_iteration", self.iterations),
            ("time_total_s", self.seconds),
            (keys.TIME_CAPPED, derived_cap),
        )
        return {key: limit for key, limit in pairs if limit is not None}

    def reason(self, result: TuneResult) -> str | None:
        """Which limit a trial's last result reached, first in the order plateau,
        env_steps, iterations, time cap (``result_keys.STOP_*``); None if none did
        (another stopper, such as a budget search's, ended it)."""
        reasons = {
            keys.PLATEAU_ENV_STEPS: keys.STOP_PLATEAU,
            keys.ENV_STEPS: keys.STOP_ENV_STEPS,
            "training_iteration": keys.STOP_ITERATIONS,
            "time_total_s": keys.STOP_TIME_CAP,
            keys.TIME_CAPPED: keys.STOP_TIME_CAP,
        }
        for key, limit in self.limits().items():
            value = result.get(key)
            if value is not None and value >= limit:
                return reasons[key]
        return None


class ResourceSpec(Frozen):
    """Per-trial resources. Memory is what is studied, not speed, so env runners get a
    fraction of a CPU by default and a 2-core laptop still places 8 of them."""

    cpus_per_trainable: Annotated[float, Field(gt=0)] = 1.0
    """CPUs reserved for the trial's trainable (the algorithm's main process)."""

    cpus_per_env_runner: Annotated[float, Field(ge=0)] = 0.1
    """CPUs reserved per remote env runner (fractional: see above)."""

    max_concurrent_trials: Annotated[int, Field(ge=0)] = 1
    """Trials running at once (0 = as many as fit). One at a time keeps them from
    competing for CPU, which would slow sampling, not change memory."""

    memory_budget: Annotated[int, Field(gt=0, le=2**60)] | None = None
    """Optional: ``16GB``, ``512MiB`` or bytes. memsweep stops a trial (status
    ``over_budget``) once it holds more (``budget_scope: trial``) or its node uses more
    (``node``), checked at every flush, so a sweep on a shared machine stops short of
    taking it down. Unset: only Ray's and the kernel's OOM killers stop a trial."""

    budget_scope: Literal["trial", "node"] = "trial"
    """``trial``: Σ PSS of the trial's processes (shared pages once, as in its peak);
    ``node``: the node's used memory (then the trial with the most there is stopped)."""

    @field_validator("memory_budget", mode="before")
    @classmethod
    def _budget_size(cls, value: Any) -> Any:
        return None if value is None else parse_bytes(value)

    @field_serializer("memory_budget")
    def _memory_budget_with_unit(self, value: int | None) -> str | None:
        return None if value is None else f"{value}B"


class TrainingSpec(Frozen):
    """Algorithm settings that change speed or memory but are not studied factors."""

    num_envs_per_env_runner: Annotated[int, Field(gt=0, le=1024)] = 1
    """Vectorised sub-environments per env runner."""

    learning_starts: Annotated[int, Field(ge=0)] = 1000
    """Env steps sampled before the first gradient update (replay algorithms)."""

    train_batch_size: Annotated[int, Field(gt=0)] = 32
    """Transitions per gradient update (DQN, SAC); PPO/APPO: the per-iteration batch."""

    training_intensity: Annotated[float, Field(gt=0)] | None = 0.25
    """Replay algorithms (DQN and SAC alike): trained ÷ sampled steps. memsweep studies
    memory, not learning, so the default is low (one 32-transition update per 128 env
    steps): buffers fill fast (SAC at RLlib's own default samples ~10 env steps/s on
    2 cores, and a 5,000 buffer does not fill in 4 minutes). ``null``: RLlib's default."""

    compress_observations: bool = False
    """Old API stack only: LZ4-compress stored observations (RLlib's ``compress_observations``)."""

    rollout_fragment_length: Annotated[int, Field(gt=0)] | Literal["auto"] = "auto"
    """Steps each env runner collects per sample call."""


class SamplingSpec(Frozen):
    """How often memory is read and written."""

    interval_s: Annotated[float, Field(ge=0.005, le=60)] = 0.1
    """Seconds between two samples of a process's RSS, swap and peak RSS (10 Hz)."""

    full_interval_s: Annotated[float, Field(ge=0.005, le=600)] = 1.0
    """Seconds between two full rounds: USS/PSS (``/proc/PID/smaps_rollup``, costlier),
    CPU time, process titles and new processes."""

    pss_max_age_s: Annotated[float, Field(ge=0, le=3600)] = 10.0
    """The age at which USS/PSS are read again from ``smaps_rollup`` (the kernel walks the
    process's page tables: ~10–17 ms for a Ray worker with PyTorch), seconds, within
    ``pss_cpu_share``. In between, a process whose file and shmem pages did not move (by
    256 KiB) and no process started or ended gets its last figures plus the change in its
    anonymous pages, which are its own. The reads this age calls for are spread over the
    full rounds (the oldest first, about one process in ``pss_max_age_s /
    full_interval_s`` a round), not made all at once. ``0``: read at every full round."""

    pss_cpu_share: Annotated[float, Field(gt=0, le=1)] = 0.0015
    """The share of one core the ``smaps_rollup`` reads may take on average (0.15%): a
    process's first read and the reads a change of sharers calls for (a process started
    or ended, or mapped much more) are always made, the others (its own pages moved a
    little, its age) most-needed first while this budget lasts; a read put off is
    carried from the last one. Raise it for fresher PSS on a node of many large processes (``1``: no limit in
    practice); every sample's RSS, VmHWM and swap are read at ``interval_s`` whatever it is."""

    flush_interval_s: Annotated[float, Field(gt=0, le=60)] = 2.0
    """Seconds between two Parquet files: what a crash can lose at most."""

"""Tune result keys and trial statuses: one home for names that cross stages.

The trainable writes these keys into every Tune result; the callback, the budget search,
Tune's progress table and any Tune logger (TensorBoard, W&B, MLflow) read them. Trial
statuses are the values of ``trials.parquet``'s ``status`` column.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

TuneResult = dict[str, Any]
"""A Tune result as Ray hands it to callbacks and stoppers (``Trainable.train()``'s dict,
nested, untyped; a callback may add keys in place): Ray's type, not memsweep's. Read it
by the keys below."""

TuneConfig = Mapping[str, Any]
"""A Tune trial's config (``trial.config``, the param space's values): Ray's untyped dict."""

TuneState = dict[str, Any]
"""What a Tune ``Callback.get_state`` returns and ``set_state`` receives (Tune pickles it
into the experiment state): Ray's callback API type."""

PREFIX: Final = "memsweep/"
"""Prefix of the keys memsweep's trainable reports about the RLlib algorithm it built."""

ENV_STEPS: Final = "memsweep/env_steps"
"""Env steps sampled so far (RLlib's lifetime counter), an int."""

RLLIB_ENV_STEP_KEYS: Final = (
    "num_env_steps_sampled_lifetime",
    "env_runners/num_env_steps_sampled_lifetime",
    "num_env_steps_sampled",
    "timesteps_total",
)
"""Where RLlib's ``train()`` result keeps lifetime sampled env steps, first found wins
(``/`` is a nested key, or Tune's flattened one): the top level (both stacks in Ray 2.60;
copied from ``env_runners/`` when the algorithm did not log it there), under
``env_runners/`` on the new stack, the old stack's older counter names and Tune's
generic counter."""

ENV_STEP_KEYS: Final = (ENV_STEPS, *RLLIB_ENV_STEP_KEYS)
"""Where a Tune result's env steps are looked for, first found wins: memsweep's trainable
(:data:`ENV_STEPS`), then :data:`RLLIB_ENV_STEP_KEYS`."""

REPLAY_SIZE: Final = "memsweep/replay_size"
"""Transitions in the replay buffer now, an int (absent without a buffer)."""

PLATEAU_ENV_STEPS: Final = "memsweep/plateau_env_steps"
"""Env steps sampled since the trial's plateau began, an int: since the first result at
which its replay buffer had been filled (env steps sampled ≥ its capacity), or since its
first result for an algorithm without a buffer; 0 before that. ``stop.plateau_env_steps`` stops a trial on it."""

TIME_CAPPED: Final = "memsweep/time_capped"
"""1 once the trial's training time reached the guard derived from its estimate
(:func:`memsweep.spec.plateau.time_cap_s`, used when ``stop.seconds`` is not given), else 0."""

BUILT_REPLAY_CAPACITY: Final = "memsweep/built_replay_capacity"
"""The replay capacity RLlib built (transitions)."""

RSS_BYTES: Final = "memory/rss_bytes"
"""Σ RSS of the trial's processes now, bytes."""

PSS_BYTES: Final = "memory/pss_bytes"
"""Σ PSS of the trial's processes now, bytes (shared pages once)."""

PEAK_BYTES: Final = "memory/peak_bytes"
"""The trial's peak so far: the largest Σ PSS of its processes at any result, bytes
(the one definition of a peak: :mod:`memsweep.store.peaks`). A running figure read at
results: the end-of-run table and the analysis read it from all samples
(:func:`memsweep.store.peaks.trial_peaks`), which can differ by a few MB either way."""

HWM_BYTES: Final = "memory/hwm_bytes"
"""Σ VmHWM of the trial's processes, bytes: an upper bound that shows spikes between
results, counting shared pages once per process."""

ROLE_CURRENT_BYTES: Final = "memory/{role}/current_bytes"
"""Σ PSS of the trial's processes of one role now, bytes, for ``role`` in ``trainable``,
``env_runner``, ``learner``, ``aggregator``, ``replay``, ``child`` (the roles the trial has)
and ``total`` (all of them). From memsweep's sampler, added by its callback to every
Tune result of any trainable: the keys trackers (TensorBoard, W&B, MLflow) show."""

ROLE_PEAK_BYTES: Final = "memory/{role}/peak_bytes"
"""The largest Σ PSS of the trial's processes of one role so far, bytes (the peak's
definition, :mod:`memsweep.store.peaks`, per role); ``memory/total/peak_bytes`` is the
trial's peak as memsweep's sampler saw it."""


def role_keys(role: str) -> tuple[str, str]:
    """(current, peak) result keys of ``role``."""
    return ROLE_CURRENT_BYTES.format(role=role), ROLE_PEAK_BYTES.format(role=role)


PROJECTED_PEAK_BYTES: Final = "memory/projected_peak_bytes"
"""The peak projected to a full buffer from the trial's own trajectory, bytes."""

PSS_MB: Final = "memory/pss_mb"
PEAK_MB: Final = "memory/peak_mb"
"""Σ PSS now and the peak in MB (10⁶ bytes, memsweep's unit), for Tune's progress table."""

BUILT_KEYS: Final = {
    "model_params": "memsweep/built_model_params",
    "obs_bytes": "memsweep/built_obs_bytes",
    "built_replay_capacity": BUILT_REPLAY_CAPACITY,
    "built_num_env_runners": "memsweep/built_num_env_runners",
}
"""Trials-table column ← the Tune result key the trainable reports it under."""

TERMINATED: Final = "terminated"
ERROR: Final = "error"
OOM_KILLED: Final = "oom_killed"
OVER_BUDGET: Final = "over_budget"
ENDED: Final = frozenset({TERMINATED, ERROR, OVER_BUDGET, OOM_KILLED})
"""Statuses of a trial that will not run again."""

STOP_PLATEAU: Final = "plateau"
STOP_ENV_STEPS: Final = "env_steps"
STOP_ITERATIONS: Final = "iterations"
STOP_TIME_CAP: Final = "time_cap"
"""Values of ``trials.parquet``'s ``stop_reason`` for a terminated trial: which limit of
``stop`` it reached first. ``time_cap`` means the guard stopped it, before its plateau
(or its other limits): its buffer may not be full, its plateau too short to measure."""

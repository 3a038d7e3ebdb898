"""Tune result keys and trial statuses: one home for names that cross stages.

The trainable writes these keys into every Tune result; the callback, the budget search,
Tune's progress table and any Tune logger (TensorBoard, W&B, MLflow) read them. Trial
statuses are the values of ``trials.parquet``'s ``status`` column.
"""

from __future__ import annotations

from typing import Final

PREFIX: Final = "memsweep/"
"""Prefix of the keys memsweep's trainable reports about the RLlib algorithm it built."""

ENV_STEPS: Final = "memsweep/env_steps"
"""Env steps sampled so far (RLlib's lifetime counter), an int."""

REPLAY_SIZE: Final = "memsweep/replay_size"
"""Transitions in the replay buffer now, an int (absent without a buffer)."""

BUILT_REPLAY_CAPACITY: Final = "memsweep/built_replay_capacity"
"""The replay capacity RLlib built (transitions)."""

RSS_BYTES: Final = "memory/rss_bytes"
"""Σ RSS of the trial's processes at the last sample, bytes."""

PEAK_BYTES: Final = "memory/peak_bytes"
"""The trial's peak so far, bytes (see :mod:`memsweep.collect.collector`)."""

PROJECTED_PEAK_BYTES: Final = "memory/projected_peak_bytes"
"""The peak projected to a full buffer from the trial's own trajectory, bytes."""

RSS_MB: Final = "memory/rss_mb"
PEAK_MB: Final = "memory/peak_mb"
"""The same two figures in MiB, for Tune's progress table."""

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

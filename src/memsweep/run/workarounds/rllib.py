"""Subclasses of RLlib algorithms that work around upstream bugs, one documented each.

Each is a plain subclass (no monkey-patching), used only where the bug bites, and has a
test in ``tests/test_workloads.py`` that shows the upstream class still failing, so the
workaround can be dropped once that test starts passing.
"""

from __future__ import annotations

from typing import Any

from ray.rllib.algorithms.dqn import DQN
from ray.rllib.algorithms.sac import SAC
from ray.rllib.utils.from_config import from_config
from ray.rllib.utils.replay_buffers import ReplayBuffer


class _OldStackReplayBufferFix:
    """Build the old API stack's local replay buffer when its ``type`` is a class.

    Ray ≥ 2.53 (ray-project/ray#60491, fix not released as of 2.60) tests
    ``"EpisodeReplayBuffer" in config["replay_buffer_config"]["type"]`` in
    ``Algorithm._create_local_replay_buffer_if_necessary``. On the old stack,
    ``validate_buffer_config`` has already replaced that string by the buffer *class*, so
    the ``in`` raises ``TypeError: argument of type 'ABCMeta' is not iterable`` before the
    first iteration. Here the episode-buffer check looks at the class's name instead;
    everything else is the upstream method.
    """

    config: Any

    def _create_local_replay_buffer_if_necessary(self, config: Any) -> Any:
        buffer_config = config.get("replay_buffer_config")
        if not buffer_config or buffer_config.get("no_local_replay_buffer"):
            return None
        buffer_type = buffer_config["type"]
        type_name = buffer_type if isinstance(buffer_type, str) else buffer_type.__name__
        if "EpisodeReplayBuffer" in type_name:
            buffer_config["metrics_num_episodes_for_smoothing"] = (
                self.config.metrics_num_episodes_for_smoothing
            )
        return from_config(ReplayBuffer, buffer_config)


class MemsweepDQN(_OldStackReplayBufferFix, DQN):
    """RLlib's DQN with the old-stack replay-buffer fix (see :class:`_OldStackReplayBufferFix`)."""


class MemsweepSAC(_OldStackReplayBufferFix, SAC):
    """RLlib's SAC with the old-stack replay-buffer fix (see :class:`_OldStackReplayBufferFix`)."""

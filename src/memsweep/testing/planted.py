"""A known-answer leak for ``memsweep diagnose``: an env whose ``step`` keeps a copy of
every observation in a module-level list (:data:`HELD`), at one known line
(:data:`LEAK_LINE`), so the allocation report of a real trial must name that site.

``LeakyEnv``: observations of ``size`` float32 values (``env_config["size"]``, default
256: 1 kB), random actions, episodes of ``episode_len`` steps (default 100). Each step
appends ``leak_bytes`` (default 16 kB) of touched memory: 16 MB per 1,000 env steps.
"""

from __future__ import annotations

import inspect
from typing import Any

import gymnasium as gym
import numpy as np

HELD: list[bytes] = []
"""What the planted leak keeps: one ``leak_bytes`` block per env step, never freed."""


class LeakyEnv(gym.Env[np.ndarray, np.int64]):
    """A constant-observation env that leaks ``leak_bytes`` per step at :data:`LEAK_LINE`."""

    def __init__(self, env_config: dict[str, Any] | None = None) -> None:
        config = dict(env_config or {})
        self.size = int(config.get("size", 256))
        self.episode_len = int(config.get("episode_len", 100))
        self.leak_bytes = int(config.get("leak_bytes", 16_384))
        self.observation_space = gym.spaces.Box(0.0, 1.0, (self.size,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.t = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.t = 0
        return np.full(self.size, 0.5, dtype=np.float32), {}

    def step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.t += 1
        self.keep()
        obs = np.full(self.size, 0.5, dtype=np.float32)
        return obs, float(action), False, self.t >= self.episode_len, {}

    def keep(self) -> None:
        """The planted leak: one block per step, appended and never released."""
        HELD.append(b"\x01" * self.leak_bytes)


LEAK_FUNCTION = "keep"
"""Function of the planted allocation."""

LEAK_LINE = inspect.getsourcelines(LeakyEnv.keep)[1] + 2
"""Line number of the planted allocation in this file (``HELD.append(...)``)."""

"""Small example envs for memsweep's example sweeps: a single-agent corridor and a
two-agent version of it. Plain gymnasium / RLlib classes, as a user's own env would be.

``Corridor``: the agent walks a corridor of ``size`` cells (``env_config["size"]``,
default 16) towards its end; the observation is the one-hot position as ``size``
float32 values, so ``size`` sets the bytes of one observation. An episode ends at the
end of the corridor or after ``episode_len`` steps (default 50).

``TwoCorridors``: two agents, ``agent_0`` and ``agent_1``, each in its own corridor,
one step each per env step; the episode ends when both arrived or after
``episode_len`` steps (default 20: short episodes).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from ray.rllib.env.multi_agent_env import MultiAgentEnv


def _one_hot(position: int, size: int) -> np.ndarray:
    obs = np.zeros(size, dtype=np.float32)
    obs[position] = 1.0
    return obs


class Corridor(gym.Env):
    """Walk right (action 1) to the end of a corridor of ``size`` cells."""

    def __init__(self, env_config: dict[str, Any] | None = None) -> None:
        config = dict(env_config or {})
        self.size = int(config.get("size", 16))
        self.episode_len = int(config.get("episode_len", 50))
        self.observation_space = gym.spaces.Box(0.0, 1.0, (self.size,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.position = 0
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.position, self.t = 0, 0
        return _one_hot(self.position, self.size), {}

    def step(self, action: int):
        self.t += 1
        move = 1 if int(action) == 1 else -1
        self.position = min(max(self.position + move, 0), self.size - 1)
        arrived = self.position == self.size - 1
        reward = 1.0 if arrived else -0.01
        return _one_hot(self.position, self.size), reward, arrived, self.t >= self.episode_len, {}


class TwoCorridors(MultiAgentEnv):
    """Two agents, each in its own corridor; short episodes."""

    def __init__(self, env_config: dict[str, Any] | None = None) -> None:
        super().__init__()
        config = dict(env_config or {})
        self.size = int(config.get("size", 8))
        self.episode_len = int(config.get("episode_len", 20))
        self.agents = self.possible_agents = ["agent_0", "agent_1"]
        box = gym.spaces.Box(0.0, 1.0, (self.size,), np.float32)
        self.observation_spaces = {agent: box for agent in self.agents}
        self.action_spaces = {agent: gym.spaces.Discrete(2) for agent in self.agents}
        self.positions = {agent: 0 for agent in self.agents}
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self.positions = {agent: 0 for agent in self.agents}
        self.t = 0
        return {agent: _one_hot(0, self.size) for agent in self.agents}, {}

    def step(self, action_dict: dict[str, int]):
        self.t += 1
        for agent, action in action_dict.items():
            move = 1 if int(action) == 1 else -1
            self.positions[agent] = min(max(self.positions[agent] + move, 0), self.size - 1)
        obs = {agent: _one_hot(self.positions[agent], self.size) for agent in action_dict}
        rewards = {
            agent: 1.0 if self.positions[agent] == self.size - 1 else -0.01
            for agent in action_dict
        }
        done = all(p == self.size - 1 for p in self.positions.values())
        truncated = self.t >= self.episode_len
        terminateds = {agent: done for agent in action_dict}
        terminateds["__all__"] = done
        truncateds = {agent: truncated for agent in action_dict}
        truncateds["__all__"] = truncated
        return obs, rewards, terminateds, truncateds, {}

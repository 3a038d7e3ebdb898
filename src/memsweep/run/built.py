"""What RLlib built for a trial, read back from the algorithm object: :func:`built_facts`
(replay capacity, remote env runners, parameter count, bytes per stored observation, the
env-runner pids), so a sweep records what RLlib did and not only what it was asked;
:func:`replay_size` and :func:`env_steps` read the two counters that memory grows with.

Imports RLlib inside its functions only (see :mod:`memsweep.run.trainable`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from memsweep import result_keys as keys

if TYPE_CHECKING:
    from ray.rllib.algorithms.algorithm import Algorithm
    from ray.rllib.env.env_runner_group import EnvRunnerGroup

RESULT_PREFIX = keys.PREFIX
"""Prefix of the keys memsweep adds to a Tune result."""


@dataclass(frozen=True)
class BuiltFacts:
    """What RLlib actually built for a trial, read back from the algorithm object."""

    replay_capacity: int | None
    """Capacity of the replay buffer RLlib built, in transitions; None without one."""

    num_env_runners: int
    """Remote env-runner actors RLlib started (0: sampling in the trainable process)."""

    model_params: int
    """Parameters of one copy of the model: the RLModule (new stack, target networks
    excluded; multi-agent: all policies' modules, summed) or the local policy's model (old
    stack, target model excluded)."""

    obs_bytes: int
    """Bytes of one observation as RLlib stores it (uncompressed: with
    ``compress_observations`` the old stack stores less, by a data-dependent amount).
    Multi-agent (``env.multi_agent``): one observation of every agent, summed."""

    env_runner_pids: tuple[int, ...]
    """Pids of the local env runner (the trainable's own process) and the remote ones."""

    def as_result(self) -> dict[str, Any]:
        """Flat Tune-result keys ``memsweep/built_<field>``; pids as a list."""
        result: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            result[f"{RESULT_PREFIX}built_{field.name}"] = (
                list(value) if isinstance(value, tuple) else value
            )
        return result


def built_facts(algo: Algorithm) -> BuiltFacts:
    """Read :class:`BuiltFacts` from a built algorithm (either API stack)."""
    buffer = getattr(algo, "local_replay_buffer", None)
    group = env_runner_group(algo)
    pids = group.foreach_env_runner(lambda runner: os.getpid())
    if algo.config is not None and algo.config.enable_rl_module_and_learner:
        from ray.rllib.env import INPUT_ENV_SINGLE_SPACES

        if algo.learner_group is None:
            raise RuntimeError("a new-stack algorithm without a learner group")
        results = algo.learner_group.foreach_learner(_learner_model_params)
        model_params = int(next(iter(results)).get())  # type: ignore[no-untyped-call]
        obs_space = group.get_spaces()[INPUT_ENV_SINGLE_SPACES][0]  # type: ignore[no-untyped-call]
    else:
        policy: Any = algo.get_policy()
        model_params = _policy_model_params(policy.model)
        obs_space = policy.observation_space
    return BuiltFacts(
        replay_capacity=None if buffer is None else int(buffer.capacity),
        num_env_runners=int(group.num_remote_env_runners()),
        model_params=model_params,
        obs_bytes=space_bytes(obs_space),
        env_runner_pids=tuple(int(pid) for pid in pids),
    )


def env_runner_group(algo: Algorithm) -> EnvRunnerGroup:
    """The algorithm's env runners (RLlib types it Optional; a built one has them)."""
    if algo.env_runner_group is None:
        raise RuntimeError(f"{type(algo).__name__} has no env runner group (not set up?)")
    return algo.env_runner_group


def _learner_model_params(learner: Any, *_: Any) -> int:
    """Parameters of the learner's RLModules (one, or one per policy), minus target networks."""
    from ray.rllib.core.rl_module.apis import TargetNetworkAPI

    total = 0
    # One module (DEFAULT_MODULE_ID) single-agent; one per policy with env.multi_agent.
    for module_id in list(learner.module.keys()):
        module = learner.module[module_id]
        total += sum(int(p.numel()) for p in module.parameters())
        if isinstance(module, TargetNetworkAPI):
            total -= sum(
                int(p.numel())
                for _, target in module.get_target_network_pairs()
                for p in target.parameters()
            )
    return total


def _policy_model_params(model: Any) -> int:
    """Parameters of an old-stack ``ModelV2`` (torch ``nn.Module`` or TF ``ModelV2``)."""
    if hasattr(model, "parameters"):
        return sum(int(p.numel()) for p in model.parameters())
    return sum(int(np.prod(v.shape)) for v in model.trainable_variables())


def space_bytes(space: Any) -> int:
    """Bytes of one value of a gymnasium space as a numpy array (sum over Dict/Tuple)."""
    import gymnasium as gym

    if isinstance(space, gym.spaces.Dict):
        return sum(space_bytes(sub) for sub in space.spaces.values())
    if isinstance(space, gym.spaces.Tuple):
        return sum(space_bytes(sub) for sub in space.spaces)
    shape = space.shape or ()
    return int(np.prod(shape, dtype=np.int64)) * int(np.dtype(space.dtype).itemsize)


def stop_algorithm(algo: Algorithm) -> None:
    """``algo.stop()``, then remove the log folder RLlib made for it if it stayed empty.

    An algorithm is a Tune ``Trainable`` too: built outside Tune's storage it makes a
    fresh folder under ``~/ray_results`` (Tune's default storage path) and, in
    memsweep, never writes to it, which would leave one empty folder per trial.
    """
    algo.stop()  # type: ignore[no-untyped-call]
    with contextlib.suppress(OSError):  # Not empty, or already gone.
        Path(algo.logdir).rmdir()


def replay_size(algo: Algorithm) -> int | None:
    """Transitions now stored in the algorithm's replay buffer; None without a buffer.

    New stack: the episode buffer's ``get_num_timesteps()`` (timesteps in its episodes).
    Old stack: ``len()`` of the multi-agent buffer, which counts stored items; DQN and SAC
    store one timestep per item (``storage_unit="timesteps"``).
    """
    buffer = getattr(algo, "local_replay_buffer", None)
    if buffer is None:
        return None
    if hasattr(buffer, "get_num_timesteps"):
        return int(buffer.get_num_timesteps())
    return len(buffer)


def env_steps(result: Mapping[str, Any]) -> int:
    """Env steps sampled over the trial's lifetime, from a ``train()`` result.

    Accepts nested results (``result["env_runners"][...]``) and Tune's flattened ones
    (``"env_runners/num_env_steps_sampled_lifetime"``). Raises ``KeyError`` naming the
    keys it tried when none is there.
    """
    for name in keys.RLLIB_ENV_STEP_KEYS:
        value: Any = result
        for key in name.split("/"):
            value = value.get(key) if isinstance(value, Mapping) else None
        if value is None:
            value = result.get(name)
        if value is not None:
            return int(value)
    tried = ", ".join(keys.RLLIB_ENV_STEP_KEYS)
    raise KeyError(f"no lifetime env-step counter in the result; tried {tried}")

"""Environments memsweep builds itself: a synthetic env of chosen observation size, and
ALE games wrapped the way RLlib's new API stack expects; and the user's own env classes,
loaded from an entry point (:func:`env_class`).

Both are classes that RLlib instantiates as ``cls(env_config)``, so a trial passes the
class itself to ``config.environment(env=...)``: nothing has to be registered in the
env-runner processes, which Ray starts on its own and which import this module when
they unpickle the class.

This module imports neither RLlib nor a deep-learning framework at import time (see
:mod:`memsweep.run.trainable` for why that matters).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import importlib.util
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt

from memsweep.errors import SpecError

SYNTHETIC_ID = "memsweep/Synthetic-v0"
"""The ``env.id`` that selects :class:`SyntheticEnv` in a sweep file."""

ATARI_DIM_PX = 84
"""Side of the square grey frame RLlib's standard Atari preprocessing produces."""

ATARI_FRAMESTACK = 4
"""Frames stacked into one observation by RLlib's standard Atari preprocessing."""

_POOL_BUDGET_BYTES = 8 * 2**20
"""Most memory one env spends on its pool of precomputed observations."""

_POOL_MAX_LEN = 256
"""Most observations in the pool: enough that consecutive observations differ."""


class SyntheticEnv(gym.Env[npt.NDArray[Any], np.int64]):
    """Random observations of a chosen shape and dtype, as cheap to produce as possible.

    It exists to measure how observation size alone drives replay and sampling memory,
    without an emulator's own memory or CPU cost in the way. Observations are drawn
    once, at construction, into a small pool (up to 256 of them within 8 MiB, at least
    2: a fixed cost per env, counted in its env runner's memory) and served round-robin;
    each step returns a *copy* so that, like a real env, every observation is its own
    array and RLlib cannot alias stored transitions.

    ``env_config`` keys: ``obs_shape`` (sequence of ints, required), ``obs_dtype``
    (``"float32"`` or ``"uint8"``, default ``float32``), ``episode_len`` (steps per
    episode, default 200), ``seed`` (pool seed, default 0). Actions are ``Discrete(2)``
    and ignored; every step rewards 1; an episode terminates after ``episode_len`` steps.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012  (gymnasium's API)

    def __init__(self, env_config: Mapping[str, Any] | None = None) -> None:
        config = dict(env_config or {})
        if "obs_shape" not in config:
            raise ValueError(f"{SYNTHETIC_ID} needs env_config['obs_shape'], e.g. [1024]")
        shape = tuple(int(n) for n in config["obs_shape"])
        dtype = np.dtype(config.get("obs_dtype", "float32"))
        self.episode_len = int(config.get("episode_len", 200))
        if not shape or min(shape) <= 0 or self.episode_len <= 0:
            raise ValueError(
                f"{SYNTHETIC_ID}: obs_shape and episode_len must be > 0, "
                f"got {list(shape)} and {self.episode_len}"
            )
        if dtype == np.uint8:
            self.observation_space = gym.spaces.Box(0, 255, shape, np.uint8)
        elif dtype == np.float32:
            self.observation_space = gym.spaces.Box(-1.0, 1.0, shape, np.float32)
        else:
            raise ValueError(f"{SYNTHETIC_ID}: obs_dtype must be float32 or uint8, got {dtype}")
        self.action_space = gym.spaces.Discrete(2)

        obs_bytes = int(np.prod(shape)) * dtype.itemsize
        pool_len = max(2, min(_POOL_MAX_LEN, _POOL_BUDGET_BYTES // max(obs_bytes, 1)))
        rng = np.random.default_rng(int(config.get("seed", 0)))
        self._pool: npt.NDArray[Any]
        if dtype == np.uint8:
            self._pool = rng.integers(0, 256, (pool_len, *shape), dtype=np.uint8)
        else:
            self._pool = rng.uniform(-1.0, 1.0, (pool_len, *shape)).astype(np.float32)
        self._t = 0
        self._cursor = 0

    def _next_obs(self) -> npt.NDArray[Any]:
        self._cursor = (self._cursor + 1) % len(self._pool)
        obs: npt.NDArray[Any] = self._pool[self._cursor].copy()
        return obs

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[npt.NDArray[Any], dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            self._cursor = seed % len(self._pool)
        self._t = 0
        return self._next_obs(), {}

    def step(self, action: np.int64) -> tuple[npt.NDArray[Any], float, bool, bool, dict[str, Any]]:
        self._t += 1
        return self._next_obs(), 1.0, self._t >= self.episode_len, False, {}


def synthetic_env_config(
    obs_shape: tuple[int, ...], obs_dtype: str, episode_len: int, seed: int
) -> dict[str, Any]:
    """The ``env_config`` that makes a :class:`SyntheticEnv` (JSON-able, for Tune)."""
    return {
        "obs_shape": list(obs_shape),
        "obs_dtype": obs_dtype,
        "episode_len": episode_len,
        "seed": seed,
    }


class AtariEnv(gym.Wrapper[Any, Any, Any, Any]):
    """An ALE game for RLlib's new API stack, with its standard Atari preprocessing.

    ``env_config``: ``id`` (``ALE/Pong-v5``) and ``preprocess`` (default true: 84×84
    grey frames, max-and-skip 4, 4 stacked, via RLlib's ``wrap_atari_for_new_api_stack``;
    note that wrapper also scales frames to float32, so the new stack stores 4× the
    bytes per observation of the old stack's uint8 frames). ``ale_py`` is imported and
    its ids registered here because env-runner processes never ran the driver's imports.

    The old API stack does not use this class: it passes the id as ``ale_py:ALE/...``
    and lets its ``RolloutWorker`` apply the ``preprocessor_pref="deepmind"`` wrapping.
    """

    def __init__(self, env_config: Mapping[str, Any] | None = None) -> None:
        import ale_py

        gym.register_envs(ale_py)
        config = dict(env_config or {})
        env_id = str(config.get("id", ""))
        if not env_id.startswith("ALE/"):
            raise ValueError(f"AtariEnv needs env_config['id'] like 'ALE/Pong-v5', got {env_id!r}")
        if config.get("preprocess", True):
            from ray.rllib.env.wrappers.atari_wrappers import wrap_atari_for_new_api_stack

            # frameskip=1 in the emulator: the wrapper's max-and-skip does the skipping.
            inner = wrap_atari_for_new_api_stack(
                gym.make(env_id, frameskip=1),
                dim=ATARI_DIM_PX,
                frameskip=4,
                framestack=ATARI_FRAMESTACK,
            )
        else:
            inner = gym.make(env_id)
        super().__init__(inner)


def load_entry_point(entry_point: str) -> Any:
    """The object an entry point names: ``package.module:Name`` (imported as any module)
    or ``/abs/path/file.py:Name`` (loaded from the file under a module name of its own;
    in a trial, from the source the driver shipped, see :class:`ShippedCode`).

    A file's module is registered with cloudpickle to pickle *by value*, so env runners and
    other Ray workers get the class inside the pickled ``AlgorithmConfig`` without the
    file. A ``package.module`` is pickled by reference and must import in every worker,
    like any installed package. Raises :class:`~memsweep.errors.SpecError` with one line
    when the module does not import or has no such name. This runs the user's code: it is
    what the sweep file asks for.
    """
    target, _, name = entry_point.rpartition(":")
    try:
        if is_file_entry_point(entry_point):
            module = _load_file_module(Path(target))
        else:
            module = importlib.import_module(target)
    except SpecError:
        raise
    except Exception as exc:  # The user's code may raise anything while importing.
        raise SpecError(
            f"cannot import {target} for {entry_point}: {type(exc).__name__}: {_first_line(exc)}"
        ) from None
    if not hasattr(module, name):
        raise SpecError(f"{target} has no {name!r} (entry point {entry_point})")
    return getattr(module, name)


@dataclass(frozen=True)
class ShippedCode:
    """The sweep file's own code (its file entry points: ``env.id`` and ``config``) as
    source text, read in the driver and executed in the trial, so that a trial on any node
    builds its config without the files: a trainable never opens the driver's path, which
    another node lacks. The driver only reads the files (it runs no user code and stays
    free of RLlib); the trial executes each once it has decided whether its process
    imports TensorFlow (:func:`memsweep.run.trainable.prepare_process_for`), and its env
    runners get the classes pickled by value, as from a file loaded in place.
    Made by :func:`ship_file_entry_points`, installed in a trial by :func:`install_shipped`.
    """

    sources: tuple[tuple[str, str], ...]
    """(``/abs/path/file.py``, that file's source text)."""


SHIPPED_ORIGIN = "shipped by the driver"
"""``__spec__.origin`` of a module executed from shipped source (a file's is its path)."""

_SHIPPED: dict[str, str] = {}
"""File path → source text, installed in this process by :func:`install_shipped`."""


def ship_file_entry_points(entry_points: Iterable[str | None]) -> ShippedCode:
    """The source of each file entry point (``/abs/x.py:Name``; a ``package.module``
    imports in every worker and is skipped), read here; :class:`SpecError` with one line
    when a file cannot be read."""
    sources: dict[str, str] = {}
    for entry_point in entry_points:
        if entry_point is None or not is_file_entry_point(entry_point):
            continue
        path = entry_point.rpartition(":")[0]
        try:
            sources[path] = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError(f"cannot read {path} for {entry_point}: {exc}") from None
    return ShippedCode(tuple(sources.items()))


def is_file_entry_point(entry_point: str) -> bool:
    """``x.py:Name``: a file, loaded by :func:`load_entry_point` from its path."""
    return entry_point.rpartition(":")[0].endswith(".py")


def install_shipped(code: ShippedCode | None) -> None:
    """Make :func:`load_entry_point` execute the shipped source of a file instead of
    reading the file, in this process (a trial)."""
    if code is not None:
        _SHIPPED.update(code.sources)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "(no message)"


def _load_file_module(path: Path) -> ModuleType:
    """Load ``path`` as a module named after its path (loaded once per process)."""
    from ray import cloudpickle  # Ray serialises with its own vendored cloudpickle.

    digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
    stem = re.sub(r"\W", "_", path.stem)
    module_name = f"memsweep_user_{stem}_{digest}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    shipped = _SHIPPED.get(str(path))
    if shipped is not None:
        # The driver's copy: this process may be on a node without the file.
        module = ModuleType(module_name)
        module.__file__ = str(path)
        module.__spec__ = importlib.machinery.ModuleSpec(module_name, None, origin=SHIPPED_ORIGIN)
        sys.modules[module_name] = module
        try:
            exec(compile(shipped, str(path), "exec"), module.__dict__)
        except BaseException:
            del sys.modules[module_name]
            raise
        cloudpickle.register_pickle_by_value(module)  # type: ignore[no-untyped-call]
        return module
    if not path.is_file():
        raise SpecError(f"no such file {path}")
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise SpecError(f"{path} cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    cloudpickle.register_pickle_by_value(module)  # type: ignore[no-untyped-call]
    return module


def env_class(entry_point: str, multi_agent: bool) -> type[Any]:
    """The env class an ``env.id`` entry point names, checked to be a ``gymnasium.Env``
    (``multi_agent`` false) or an RLlib ``MultiAgentEnv`` (true); :class:`SpecError`
    naming the fix otherwise."""
    from ray.rllib.env.multi_agent_env import MultiAgentEnv

    value = load_entry_point(entry_point)
    shown = entry_point.rsplit("/", 1)[-1]
    if not isinstance(value, type):
        raise SpecError(
            f"env.id: {shown} is a {type(value).__name__}, not an env class (RLlib builds "
            "it as EnvClass(env_config))"
        )
    is_multi = issubclass(value, MultiAgentEnv)
    if is_multi and not multi_agent:
        raise SpecError(
            f"env.id: {shown} is a MultiAgentEnv: add env.multi_agent, e.g. "
            "{policies: [p0, p1], mapping: {agent_0: p0, agent_1: p1}}"
        )
    if multi_agent and not is_multi:
        raise SpecError(
            f"env.multi_agent: {shown} is not an RLlib MultiAgentEnv: remove multi_agent "
            "or use a MultiAgentEnv class"
        )
    if not is_multi and not issubclass(value, gym.Env):
        raise SpecError(
            f"env.id: {shown} is not a gymnasium.Env (nor an RLlib MultiAgentEnv) subclass"
        )
    return value


@dataclass(frozen=True)
class AgentMapping:
    """RLlib's ``policy_mapping_fn`` for ``env.multi_agent``: agent id → policy id, the
    first policy for an agent not listed. A frozen dataclass of a module memsweep ships,
    so it pickles by reference into every env runner."""

    mapping: tuple[tuple[str, str], ...]
    """(agent id, policy id) pairs."""

    default: str
    """The policy of an agent not in ``mapping``."""

    def __call__(self, agent_id: Any, episode: Any = None, **kwargs: Any) -> str:
        return dict(self.mapping).get(str(agent_id), self.default)

"""Check a study against RLlib itself, before Ray starts: algorithm, ``rllib:`` keys,
RLlib-config factors, the user's env entry point, and the env each trial builds.

The spec stage checks shapes without importing Ray (:mod:`memsweep.spec`); what only
RLlib knows — which algorithms it registers, which attributes an ``AlgorithmConfig``
has, whether an algorithm has a replay buffer, whether an entry point names an env
class — is checked here, by importing RLlib once, lazily, and only when the study needs
it (:func:`needs_rllib`): a sweep of memsweep's own algorithms on its synthetic env with
the four built-in factors imports nothing. Any other env is built here once per distinct
``env_config`` of the trials (:func:`_build_envs`), so that an env no trial could build is
one line before Ray starts. Importing RLlib and one algorithm's config costs
about 3 s of CPU (several more on a loaded machine); :class:`RllibCheck` records it.

**Where it runs.** In a short-lived subprocess (``python -m memsweep.run.rllib_check``),
so that the driver of a sweep never holds RLlib (and TensorFlow) itself: they cost it
about 1 GB of RSS on the node it measures. The subprocess hands back what it found and
the :class:`~memsweep.run.placement.RllibResources` of the algorithm's (or the user's)
config, from which :mod:`memsweep.run.placement` computes every trial's placement group.
A process that has already imported RLlib checks in-process (nothing to save). Each study
is checked once per process: ``memsweep run`` checks before Ray starts and
:func:`~memsweep.run.sweep.run_study` reuses that result.

Errors are :class:`~memsweep.errors.SpecError`, one line naming the key and the fix.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from numbers import Number
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memsweep.errors import MemsweepError, SpecError
from memsweep.run.placement import RLLIB_DEFAULTS, RllibResources, resources_of
from memsweep.spec import ALGORITHMS, FACTOR_NAMES, Study

if TYPE_CHECKING:
    from ray.rllib.algorithms.algorithm_config import AlgorithmConfig

    from memsweep.spec.point import TrialPoint


@dataclass(frozen=True)
class RllibCheck:
    """What the check found, for ``memsweep validate`` to print."""

    config_class: str
    """The algorithm's config class, e.g. ``PPOConfig``."""

    has_replay_buffer: bool
    """Whether the algorithm's default config has a replay buffer."""

    env_class: str | None
    """The user's env class (``module.Class``) when ``env.id`` is an entry point."""

    seconds: float
    """Wall time of the check: importing RLlib, the algorithm and the user's code (in
    the subprocess, without its start)."""

    resources: RllibResources = RLLIB_DEFAULTS
    """The resource settings of the algorithm's default config or the user's
    ``config:`` (before memsweep's own): the base of every trial's placement group."""


def needs_rllib(study: Study) -> bool:
    """Whether checking ``study`` needs RLlib (or the user's code) imported."""
    return bool(
        study.algorithm not in ALGORITHMS
        or study.rllib
        or study.factors.rllib
        or study.env.kind in ("module", "file")
        or study.config is not None
        or _builds_env(study)
    )


def _builds_env(study: Study) -> bool:
    """Whether the check builds the study's env (:func:`_build_envs`): every env but
    memsweep's synthetic one (its spaces are memsweep's own: a Box and ``Discrete(2)``),
    for the trials known before Tune starts (a grid or a budget search)."""
    return not study.env.is_synthetic and study.search.mode in ("grid", "budget")


def check_study(study: Study, source: str) -> RllibCheck | None:
    """Check what only RLlib knows; None (and nothing imported) when nothing needs it.

    Raises :class:`SpecError` ("``source``: ``key``: problem; fix") for an algorithm RLlib
    does not register, a replay capacity for an algorithm without a buffer, an
    ``AlgorithmConfig`` attribute that does not exist (with the nearest names), a value
    whose type cannot be the attribute's, an entry point that does not import or is not
    an env class, an env a trial could not build or whose action space the algorithm's
    RLModule refuses (:func:`_build_envs`); :class:`MemsweepError` when the check's subprocess fails otherwise.
    Runs in a subprocess unless RLlib is already imported here; a study checked before in
    this process is not checked again.
    """
    if not needs_rllib(study):
        return None
    key = _cache_key(study)
    if key not in _CHECKED:
        try:
            if "ray.rllib" in sys.modules:
                _CHECKED[key] = _check(study, time.monotonic())
            else:
                _CHECKED[key] = _check_in_subprocess(study)
        except SpecError as exc:
            raise SpecError(f"{source}: {exc}") from None
    return _CHECKED[key]


def base_resources(study: Study) -> RllibResources:
    """The base of the study's placement groups (:mod:`memsweep.run.placement`): RLlib's
    defaults for memsweep's own algorithms, else what the RLlib check read from the real
    config (checked now if it was not yet)."""
    checked = check_study(study, study.name)
    return RLLIB_DEFAULTS if checked is None else checked.resources


_CHECKED: dict[str, RllibCheck] = {}
"""Studies checked in this process, by their JSON."""


def _cache_key(study: Study) -> str:
    return json.dumps(study.model_dump(mode="json"), sort_keys=True)


def _check_in_subprocess(study: Study) -> RllibCheck:
    """Run :func:`_check` in ``python -m memsweep.run.rllib_check``; its output (also
    whatever RLlib or the user's code print) is kept from the user unless it fails
    without a :class:`SpecError`."""
    env = dict(os.environ)
    if all(f == "torch" for f in study.factors.framework):
        env["RLLIB_TEST_NO_TF_IMPORT"] = "1"
    else:
        env.pop("RLLIB_TEST_NO_TF_IMPORT", None)
        env.setdefault("TF_USE_LEGACY_KERAS", "1")
    # The child finds memsweep where this process did (a source checkout on sys.path).
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    with tempfile.TemporaryDirectory(prefix="memsweep-check-") as folder:
        answer = Path(folder) / "answer.json"
        done = subprocess.run(
            [sys.executable, "-m", "memsweep.run.rllib_check", str(answer)],
            input=json.dumps(study.model_dump(mode="json")),
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        try:
            result = json.loads(answer.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            lines = (done.stderr or done.stdout or "").strip().splitlines()
            last = lines[-1] if lines else f"exit code {done.returncode}"
            raise MemsweepError(f"The RLlib check of the sweep failed: {last}") from None
    if "error" in result:
        raise SpecError(result["error"])
    found = result["check"]
    return RllibCheck(
        config_class=found["config_class"],
        has_replay_buffer=found["has_replay_buffer"],
        env_class=found["env_class"],
        seconds=found["seconds"],
        resources=RllibResources.from_json(found["resources"]),
    )


def _child(answer: str) -> None:
    """The subprocess's side: the study as JSON on stdin, the answer to file ``answer``."""
    study = Study.model_validate(json.loads(sys.stdin.read()))
    try:
        checked = _check(study, time.monotonic())
    except SpecError as exc:
        result: dict[str, Any] = {"error": str(exc)}
    else:
        result = {
            "check": {
                "config_class": checked.config_class,
                "has_replay_buffer": checked.has_replay_buffer,
                "env_class": checked.env_class,
                "seconds": checked.seconds,
                "resources": checked.resources.to_json(),
            }
        }
    Path(answer).write_text(json.dumps(result), encoding="utf-8")


def _check(study: Study, started: float) -> RllibCheck:
    from memsweep.run.envs import env_class
    from memsweep.run.workloads import has_replay_buffer, registered_algorithm, user_config

    with _no_tensorflow_import(study):
        if study.config is not None:
            config = user_config(study)
            name = _registered_name(config.algo_class)
            if name != study.algorithm:
                raise SpecError(
                    f"config: it returns a {type(config).__name__} ({name}) but algorithm is "
                    f"{study.algorithm}: set algorithm: {name}"
                )
            if not config.enable_rl_module_and_learner:
                raise SpecError(
                    "config: it returns an old-API-stack config; memsweep runs a user's "
                    "config on RLlib's new API stack only (api_stack(enable_rl_module_and_"
                    "learner=True, enable_env_runner_and_connector_v2=True))"
                )
            if config.framework_str != "torch":
                # It would run as torch: memsweep sets torch on a user's config.
                raise SpecError(
                    f"config: it sets framework {config.framework_str}, but memsweep runs a "
                    "user's config on RLlib's new API stack, which is torch-only: remove "
                    ".framework(...) from the function, or sweep TensorFlow without config: "
                    "(factors: {framework: [tf2]})"
                )
        else:
            config = registered_algorithm(study.algorithm).get_default_config()
    replay = has_replay_buffer(config)
    if not replay and study.factors.replay_capacity != (0,):
        given = "replay_capacity" in study.factors.model_fields_set
        raise SpecError(
            f"factors.replay_capacity: algorithm {study.algorithm} has no replay buffer (its "
            f"{type(config).__name__} has no replay_buffer_config)"
            + ("" if given else ", and replay_capacity defaults to [50000] (for DQN and SAC)")
            + ": set replay_capacity: [0]"
        )
    if replay and 0 in study.factors.replay_capacity:
        raise SpecError(
            f"factors.replay_capacity: {study.algorithm} has a replay buffer: give a capacity > 0"
        )
    for key, value in study.rllib.items():
        _check_key(config, key, [value], "rllib", builtins=())
    for key, levels in study.factors.rllib.items():
        _check_key(config, key, list(levels), "factors", builtins=FACTOR_NAMES)
    found_env = None
    if study.env.kind in ("module", "file"):
        try:
            cls = env_class(study.env.id, multi_agent=study.env.multi_agent is not None)
        except SpecError as exc:
            message = str(exc)
            raise SpecError(
                message if message.startswith("env") else f"env.id: {message}"
            ) from None
        found_env = f"{cls.__module__}.{cls.__qualname__}"
    _build_envs(study, _validate_trials(study))
    return RllibCheck(
        config_class=type(config).__name__,
        has_replay_buffer=replay,
        env_class=found_env,
        seconds=time.monotonic() - started,
        resources=resources_of(config),
    )


def _validate_trials(study: Study) -> list[tuple[TrialPoint, AlgorithmConfig]]:
    """Build every trial's config as its trainable will and let RLlib validate it, so that a
    combination RLlib refuses (e.g. a ``minibatch_size`` above one trial's
    ``train_batch_size_per_learner``) is one line now, not a failed trial later. The driver
    no longer builds configs (it stays small), so this subprocess is where it happens.
    Returns each trial's point and config (none for a drawn search), built once here."""
    from memsweep.run.workloads import build_config

    if study.search.mode not in ("grid", "budget"):
        return []  # drawn points are not known before Tune draws them
    trials = []
    for point in study.points():
        try:
            config = build_config(study, point)
            config.validate()
        except ValueError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            values = ", ".join(f"{k}={v}" for k, v in point.factor_values().items())
            raise SpecError(
                f"RLlib refuses the config of the trial with {values}: {first}"
            ) from None
        trials.append((point, config))
    return trials


def _build_envs(study: Study, trials: list[tuple[TrialPoint, AlgorithmConfig]]) -> None:
    """Build the env once for each distinct ``env_config`` the study's trials use, as a
    trial's env runner builds it, so that an env that cannot be built (its ``__init__``
    raises, it has no gymnasium spaces, ``gymnasium.make`` refuses a key of its
    ``env_config``) or whose action space the algorithm refuses (DQN on ``Pendulum-v1``)
    is one line now, not every trial failing after Ray started.

    New API stack: RLlib's own ``SingleAgentEnvRunner`` / ``MultiAgentEnvRunner`` on the
    trial's config with one env (``make_env``: ``gymnasium.make(id, **env_config)`` or
    ``EnvClass(EnvContext)``; ``make_module``: the algorithm's RLModule for the env's
    spaces, where RLlib refuses an action space), then one ``reset`` and one step of a
    random action, then ``stop`` (closes the env). Old stack: RLlib's
    ``_gym_env_creator``, as its ``RolloutWorker`` calls it, then the same reset, step
    and close (the policy, where the old stack checks the action space, is not built).
    Cost: one env (and on the new stack one RLModule) per distinct ``env_config`` and
    stack, built one after another in the check's subprocess: for CartPole about 0.1 s
    each; an env slow to build costs its build time once per distinct ``env_config``.
    Raises :class:`SpecError` naming the trial's factor values, the env and the first
    line of the exception."""
    if not _builds_env(study):
        return
    built: set[str] = set()
    for point, config in trials:
        stack = point.api_stack(study)
        key = json.dumps([stack, dict(config.env_config)], sort_keys=True, default=repr)
        if key in built:
            continue
        built.add(key)
        spaces: list[str] = []
        try:
            _build_env(config, stack, multi_agent=study.env.multi_agent is not None, spaces=spaces)
        except Exception as exc:  # The env's own code (or RLlib on it) may raise anything.
            values = ", ".join(f"{k}={v}" for k, v in point.factor_values().items())
            env = f"{study.env.label} with env_config {dict(config.env_config)}"
            # spaces: [] while the env is built, [obs, act] while RLlib builds the module
            # (single-agent), then RUNNING appended once the env is reset and stepped.
            in_module = len(spaces) == 2 and RUNNING not in spaces
            root = _module_error(exc) if in_module else _root_cause(exc)
            text = str(root).strip()
            first = f"{type(root).__name__}: {text.splitlines()[0] if text else '(no message)'}"
            if RUNNING in spaces:
                raise SpecError(
                    f"env.id: {env} was built but fails on reset or step in the trial with "
                    f"{values}: {first}; fix the env's reset or step (memsweep resets it and "
                    "steps it once with a random action, as each trial's env runner will)"
                ) from None
            if in_module:
                raise SpecError(
                    f"algorithm: RLlib cannot build {study.algorithm}'s RLModule for {env} "
                    f"(observation space {spaces[0]}, action space {spaces[1]}) in the trial "
                    f"with {values}: {first}; use an algorithm that supports this action "
                    "space, or an env with one it supports"
                ) from None
            raise SpecError(
                f"env.id: {env} cannot be built for the trial with {values}: {first}; fix "
                "the env or its env_config (memsweep builds it as each trial's env runner "
                "will: gymnasium.make(id, **env_config), or EnvClass(env_config))"
            ) from None


def _module_error(exc: BaseException) -> BaseException:
    """What made an RLModule's build fail: RLlib 2.60's ``RLModuleSpec.build`` answers an
    ``AttributeError`` of the module's constructor (often its Catalog refusing the
    spaces) by retrying the deprecated ``RLModule(config=...)``, whose ValueError hides
    the error that matters (its ``__context__``)."""
    if str(exc).startswith("`RLModule(config=") and exc.__context__ is not None:
        return exc.__context__
    return exc


def _root_cause(exc: BaseException) -> BaseException:
    """The first exception of ``exc``'s chain: RLlib wraps an env's own error in its
    ``EnvError``, and re-raises an RLModule's failed build as a deprecation error."""
    seen = {id(exc)}
    while True:
        inner = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
        if inner is None or id(inner) in seen:
            return exc
        seen.add(id(inner))
        exc = inner


RUNNING = "(reset and step)"
"""Appended to :func:`_build_env`'s ``spaces`` once the env is built (and on the new stack
its RLModule): a failure after it is the env's reset or step."""


def _build_env(config: AlgorithmConfig, stack: str, multi_agent: bool, spaces: list[str]) -> None:
    """Build one env of ``config`` as a trial would (see :func:`_build_envs`), step it
    once and close it; raises whatever the env or RLlib raise. ``spaces`` receives the
    env's observation and action spaces once the env is built and RLlib starts building
    the RLModule for them (empty while the env itself is being built), then
    :data:`RUNNING` once the env is reset and stepped."""
    one = config.copy(copy_frozen=False)
    one.env_runners(num_env_runners=0, num_envs_per_env_runner=1)
    # No seed: with one, RLlib's EnvRunner calls torch.use_deterministic_algorithms, which
    # imports torch._dynamo and torch._inductor (measured: a CartPole sweep's check took
    # 4.4 CPU seconds without, 6.0 with). The env is built, reset and stepped all the same.
    one.debugging(seed=None)
    if stack == "new":
        from ray.rllib.env.multi_agent_env_runner import MultiAgentEnvRunner
        from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner

        base: Any = MultiAgentEnvRunner if multi_agent else SingleAgentEnvRunner

        class Runner(base):  # type: ignore[misc]
            """RLlib's env runner, telling which of its env and RLModule failed."""

            def make_module(self) -> None:
                if not multi_agent:  # A vector env of one: its single_* spaces are the env's.
                    obs, act = _checked_spaces(
                        self.env.single_observation_space, self.env.single_action_space
                    )
                    spaces.extend([str(obs), str(act)])
                super().make_module()
                spaces.append(RUNNING)

        runner = Runner(config=one)
        try:
            runner.sample(num_timesteps=1, random_actions=True)
        finally:
            runner.stop()
        return
    from ray.rllib.env.env_context import EnvContext
    from ray.rllib.env.utils import _gym_env_creator

    descriptor: Any = one.env
    env: Any = _gym_env_creator(EnvContext(dict(one.env_config), worker_index=0), descriptor)
    try:
        obs, act = _checked_spaces(
            getattr(env, "observation_space", None), getattr(env, "action_space", None)
        )
        spaces.extend([str(obs), str(act), RUNNING])  # the old stack builds no module here
        env.reset(seed=0)
        env.step(env.action_space.sample())
    finally:
        env.close()


def _checked_spaces(observation_space: Any, action_space: Any) -> tuple[Any, Any]:
    """The env's spaces; TypeError naming the fix when one is not a gymnasium space."""
    import gymnasium as gym

    for name, space in (("observation_space", observation_space), ("action_space", action_space)):
        if not isinstance(space, gym.spaces.Space):
            raise TypeError(
                f"its {name} is a {type(space).__name__}, not a gymnasium space: set "
                f"self.{name} to one in __init__"
            )
    return observation_space, action_space


def _registered_name(algo_class: Any) -> str:
    """RLlib's registry name of an algorithm class (``Impala`` → ``IMPALA``)."""
    from ray.rllib.algorithms.registry import ALGORITHMS_CLASS_TO_NAME

    name = getattr(algo_class, "__name__", str(algo_class))
    return str(ALGORITHMS_CLASS_TO_NAME.get(name, name))


def config_attributes(config: AlgorithmConfig) -> list[str]:
    """The attributes a sweep may set on ``config``: its public instance attributes and
    the properties with a setter (``train_batch_size_per_learner`` is one)."""
    names = {name for name in vars(config) if not name.startswith("_")}
    names.update(
        name
        for name, member in inspect.getmembers(type(config))
        if isinstance(member, property) and member.fset is not None and not name.startswith("_")
    )
    return sorted(names)


def _check_key(
    config: AlgorithmConfig,
    key: str,
    values: list[Any],
    where: str,
    builtins: tuple[str, ...],
) -> None:
    from memsweep.run.workloads import OWNED_KEYS

    attr, _, inner = key.partition(".")
    if attr in OWNED_KEYS and not (attr == "env_config" and inner):
        raise SpecError(
            f"{where}.{key}: memsweep sets {attr} from its own key {OWNED_KEYS[attr]}: use that"
        )
    known = config_attributes(config)
    if attr not in known:
        close = difflib.get_close_matches(attr, [*builtins, *known], n=3, cutoff=0.6)
        hint = f"; nearest: {', '.join(close)}" if close else ""
        raise SpecError(f"{where}.{key}: {type(config).__name__} has no attribute {attr!r}{hint}")
    default = getattr(config, attr)
    if inner:
        if not isinstance(default, Mapping):
            raise SpecError(
                f"{where}.{key}: {attr} is not a dict in {type(config).__name__} (it is "
                f"{type(default).__name__}): name the attribute itself"
            )
        return
    for value in values:
        if isinstance(default, bool) and not isinstance(value, bool):
            raise SpecError(f"{where}.{key}: {attr} is true or false, got {value!r}")
        if (
            isinstance(default, Number)
            and not isinstance(default, bool)
            and not (isinstance(value, Number) and not isinstance(value, bool))
        ):
            raise SpecError(f"{where}.{key}: {attr} is a number, got {value!r}")


@contextlib.contextmanager
def _no_tensorflow_import(study: Study) -> Iterator[None]:
    """While RLlib is first imported here for a torch-only study, keep TensorFlow out
    (``RLLIB_TEST_NO_TF_IMPORT``, as memsweep's torch trials do); restored afterwards so
    that processes started later (Ray's) inherit the environment unchanged."""
    torch_only = all(f == "torch" for f in study.factors.framework)
    if not torch_only or "ray.rllib" in sys.modules:
        yield
        return
    previous = os.environ.get("RLLIB_TEST_NO_TF_IMPORT")
    os.environ["RLLIB_TEST_NO_TF_IMPORT"] = "1"
    # RLlib logs "Not importing TensorFlow for test purposes" on every lookup.
    logging.getLogger("ray.rllib.utils.framework").setLevel(logging.ERROR)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("RLLIB_TEST_NO_TF_IMPORT", None)
        else:
            os.environ["RLLIB_TEST_NO_TF_IMPORT"] = previous


if __name__ == "__main__":
    _child(sys.argv[1])

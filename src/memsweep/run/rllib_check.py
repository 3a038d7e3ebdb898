"""Check a study against RLlib itself, before Ray starts: algorithm, ``rllib:`` keys,
RLlib-config factors and the user's env entry point.

The spec stage checks shapes without importing Ray (:mod:`memsweep.spec`); what only
RLlib knows — which algorithms it registers, which attributes an ``AlgorithmConfig``
has, whether an algorithm has a replay buffer, whether an entry point names an env
class — is checked here, by importing RLlib once, lazily, and only when the study needs
it (:func:`needs_rllib`): a sweep of memsweep's own algorithms, gymnasium ids and the
four built-in factors imports nothing. Importing RLlib and one algorithm's config costs
about 3 s of CPU (several more on a loaded machine); :class:`RllibCheck` records it.

Errors are :class:`~memsweep.errors.SpecError`, one line naming the key and the fix.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import logging
import os
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from numbers import Number
from typing import TYPE_CHECKING, Any

from memsweep.errors import SpecError
from memsweep.run.workloads import OWNED_KEYS
from memsweep.spec import ALGORITHMS, FACTOR_NAMES, Study

if TYPE_CHECKING:
    from ray.rllib.algorithms.algorithm_config import AlgorithmConfig


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
    """Wall time of the check: importing RLlib, the algorithm and the user's code."""


def needs_rllib(study: Study) -> bool:
    """Whether checking ``study`` needs RLlib (or the user's code) imported."""
    return bool(
        study.algorithm not in ALGORITHMS
        or study.rllib
        or study.factors.rllib
        or study.env.kind in ("module", "file")
        or study.config is not None
    )


def check_study(study: Study, source: str) -> RllibCheck | None:
    """Check what only RLlib knows; None (and nothing imported) when nothing needs it.

    Raises :class:`SpecError` ("``source``: ``key``: problem; fix") for an algorithm RLlib
    does not register, a replay capacity for an algorithm without a buffer, an
    ``AlgorithmConfig`` attribute that does not exist (with the nearest names), a value
    whose type cannot be the attribute's, an entry point that does not import or is not
    an env class.
    """
    if not needs_rllib(study):
        return None
    started = time.monotonic()
    try:
        return _check(study, started)
    except SpecError as exc:
        raise SpecError(f"{source}: {exc}") from None


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
        else:
            config = registered_algorithm(study.algorithm).get_default_config()
    replay = has_replay_buffer(config)
    if not replay and study.factors.replay_capacity != (0,):
        raise SpecError(
            f"factors.replay_capacity: algorithm {study.algorithm} has no replay buffer (its "
            f"{type(config).__name__} has no replay_buffer_config): set replay_capacity: [0]"
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
    return RllibCheck(
        config_class=type(config).__name__,
        has_replay_buffer=replay,
        env_class=found_env,
        seconds=time.monotonic() - started,
    )


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

"""Study point → RLlib ``AlgorithmConfig``, and what RLlib actually built from it.

:func:`build_config` maps one :class:`~memsweep.spec.TrialPoint` of a
:class:`~memsweep.spec.Study` onto RLlib's config fields; :mod:`memsweep.run.built`
reads back from the built algorithm what memory depends on, and the
two counters that memory grows with.

Which stack runs what: torch on RLlib's new API stack (RLModule, Learner, EnvRunner)
unless the study says ``api_stack: old``; TensorFlow always on the old stack (Policy,
RolloutWorker), the only one where RLlib still has it.

How the model spec maps, per stack (RLlib's own model builders differ, so the same
spec yields slightly different networks; :attr:`BuiltFacts.model_params` has the truth):

- dense-only: new stack ``fcnet_hiddens`` with no extra head layers
  (``head_fcnet_hiddens=[]``); old stack ``model.fcnet_hiddens`` and, for DQN,
  ``hiddens=[]`` (RLlib's old default, ``[256]``, adds a layer the new stack does not
  have). DQN runs with ``dueling=False`` on both stacks: without head layers, RLlib's
  old-stack torch dueling head degenerates (its value stream is the identity), and a
  plain Q-network is the same network on every stack: the spec's dense layers and a
  linear layer to the action values (the old stack's model also holds one unused
  ``last hidden → 1`` value layer).
- conv: ``conv_filters`` rows ``[filters, [k, k], stride]``; the dense layers after the
  conv stack are ``head_fcnet_hiddens`` on the new stack (its CNN encoder has no dense
  part) and ``model.post_fcnet_hiddens`` on the old stack, whose vision network needs the
  conv stack to end at 1×1.

This module imports RLlib inside its functions only: importing it must not import RLlib
(and with it TensorFlow) into a process that has not decided yet whether it wants
TensorFlow (see :mod:`memsweep.run.trainable`).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from memsweep.errors import SpecError
from memsweep.run.envs import (
    ATARI_DIM_PX,
    SYNTHETIC_ID,
    AgentMapping,
    AtariEnv,
    SyntheticEnv,
    env_class,
    load_entry_point,
    synthetic_env_config,
)
from memsweep.spec import ALGORITHMS, REPLAY_ALGORITHMS, ModelSpec, Study, TrialPoint

if TYPE_CHECKING:
    from ray.rllib.algorithms.algorithm import Algorithm
    from ray.rllib.algorithms.algorithm_config import AlgorithmConfig

ApiStack = Literal["new", "old"]

OLD_STACK_REPLAY_BUFFER = "MultiAgentPrioritizedReplayBuffer"
"""Old-stack replay buffer for DQN and SAC (RLlib's new-stack default, an episode
buffer, is rejected on the old stack)."""


def algorithm_class(study: Study, point: TrialPoint) -> type[Algorithm]:
    """The RLlib algorithm class a trial runs.

    On the old stack DQN and SAC are memsweep's subclasses that work around
    ray-project/ray#60491 (see :mod:`memsweep.run.workarounds.rllib`); otherwise RLlib's own.
    """
    stack = point.api_stack(study)
    if study.config is not None:
        user_class = user_config(study).algo_class
        if user_class is None:
            raise SpecError(f"config: {study.config} returns a config without an algorithm")
        algo_cls: type[Algorithm] = user_class
        return algo_cls
    if study.algorithm == "DQN":
        if stack == "old":
            from memsweep.run.workarounds.rllib import MemsweepDQN

            return MemsweepDQN
        from ray.rllib.algorithms.dqn import DQN

        return DQN
    if study.algorithm == "SAC":
        if stack == "old":
            from memsweep.run.workarounds.rllib import MemsweepSAC

            return MemsweepSAC
        from ray.rllib.algorithms.sac import SAC

        return SAC
    if study.algorithm == "APPO":
        from ray.rllib.algorithms.appo import APPO

        return APPO
    if study.algorithm == "PPO":
        from ray.rllib.algorithms.ppo import PPO

        return PPO
    return registered_algorithm(study.algorithm)


def user_config(study: Study) -> AlgorithmConfig:
    """The ``AlgorithmConfig`` the study's ``config:`` function returns, unfrozen and
    copied (the function runs each time: it is the user's code, as the sweep asks).
    :class:`SpecError` with one line when it does not import, raises, or returns
    something else."""
    from ray.rllib.algorithms.algorithm_config import AlgorithmConfig

    assert study.config is not None
    make = load_entry_point(study.config)
    shown = study.config.rsplit("/", 1)[-1]
    if not callable(make):
        raise SpecError(f"config: {shown} is a {type(make).__name__}, not a function")
    try:
        config = make()
    except Exception as exc:  # The user's code may raise anything.
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else "(no message)"
        raise SpecError(f"config: {shown}() raised {type(exc).__name__}: {message}") from None
    if not isinstance(config, AlgorithmConfig):
        raise SpecError(
            f"config: {shown}() returned a {type(config).__name__}, not an RLlib AlgorithmConfig"
        )
    copied: AlgorithmConfig = config.copy(copy_frozen=False)
    return copied


def registered_algorithm(name: str) -> type[Algorithm]:
    """The class RLlib registers under ``name`` (``ray.rllib.algorithms.registry``);
    :class:`SpecError` with the nearest registered names otherwise."""
    from ray.rllib.algorithms.registry import ALGORITHMS, _get_algorithm_class

    if name not in ALGORITHMS:
        close = difflib.get_close_matches(name, list(ALGORITHMS), n=2, cutoff=0.3)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise SpecError(
            f"algorithm: {name!r} is not an algorithm RLlib registers.{hint} "
            f"Registered: {', '.join(ALGORITHMS)}"
        )
    algo_cls: type[Algorithm] = _get_algorithm_class(name)
    return algo_cls


def has_replay_buffer(config: AlgorithmConfig) -> bool:
    """Whether an algorithm's config has a replay buffer: a ``replay_buffer_config`` with
    a ``capacity`` (DQN, SAC, CQL, DreamerV3 in RLlib 2.60)."""
    buffer = getattr(config, "replay_buffer_config", None)
    return isinstance(buffer, Mapping) and "capacity" in buffer


OWNED_KEYS: Mapping[str, str] = {
    "num_env_runners": "factors.num_workers",
    "framework_str": "factors.framework",
    "env": "env.id",
    "env_config": "env.env_config (or a factor env_config.KEY)",
    "replay_buffer_config": (
        "factors.replay_capacity (for its capacity; other buffer keys such as type or alpha "
        "go in the replay_buffer_config of a config: function, which memsweep keeps)"
    ),
    "enable_rl_module_and_learner": "api_stack",
    "enable_env_runner_and_connector_v2": "api_stack",
    "seed": "seed",
    "policies": "env.multi_agent",
    "policy_mapping_fn": "env.multi_agent",
}
"""AlgorithmConfig attributes memsweep sets from its own keys, refused in ``rllib:`` and
as factors (the value to use instead)."""


def apply_config_values(config: AlgorithmConfig, values: Mapping[str, Any]) -> None:
    """Set ``values`` on ``config``: ``attr`` → ``setattr``; ``attr.key`` → one key of a
    dict attribute (copied, so the class default is not changed)."""
    for key, value in values.items():
        attr, _, inner = key.partition(".")
        if inner:
            current = dict(getattr(config, attr) or {})
            current[inner] = value
            setattr(config, attr, current)
        else:
            setattr(config, attr, value)


def build_config(study: Study, point: TrialPoint) -> AlgorithmConfig:
    """The RLlib config for one trial: its factor values plus the study's fixed settings.

    The result is unfrozen, so a caller may still adjust it (a test shrinking an
    iteration, the trainable choosing the env-runner class). It does not choose the
    env-runner class: that decides whether TensorFlow is imported in the env-runner
    processes, which is the trainable's business (:mod:`memsweep.run.trainable`).
    """
    stack = point.api_stack(study)
    if study.config is not None:
        return _build_from_user_config(study, point)
    algo_cls = algorithm_class(study, point)
    config = algo_cls.get_default_config()
    # get_default_config() names RLlib's class; build memsweep's subclass where it has one.
    config.algo_class = algo_cls

    if stack == "old":
        config.api_stack(
            enable_rl_module_and_learner=False, enable_env_runner_and_connector_v2=False
        )
    else:
        config.api_stack(enable_rl_module_and_learner=True, enable_env_runner_and_connector_v2=True)
    if point.framework == "torch":
        config.framework("torch")
    else:
        config.framework("tf2", eager_tracing=point.framework == "tf2")

    _set_environment(config, study, point, stack)
    _set_resources(config, study, point, stack)
    _set_training(config, study, point, stack)
    _set_model(config, study, point.model, stack)
    config.debugging(seed=point.seed)
    # The study's fixed RLlib settings, then this trial's RLlib-config factor values.
    apply_config_values(config, study.rllib)
    apply_config_values(config, point.rllib)
    return config


def _build_from_user_config(study: Study, point: TrialPoint) -> AlgorithmConfig:
    """``config:``: the user's AlgorithmConfig, then what memsweep sets on top: the env
    (only when the user's config names none), num_env_runners and the CPU shares, the
    replay capacity where the algorithm has a buffer, the seed, ``rllib:`` and the
    RLlib-config factors. The model and ``training:`` stay the user's."""
    config = user_config(study)
    config.framework("torch")
    if config.env is None:
        _set_environment(config, study, point, "new")
    _set_resources(config, study, point, "new")
    if has_replay_buffer(config) and point.replay_capacity:
        buffer = {**config.replay_buffer_config, "capacity": point.replay_capacity}  # type: ignore[attr-defined]
        config.training(replay_buffer_config=buffer)  # type: ignore[call-arg]
    config.debugging(seed=point.seed)
    apply_config_values(config, study.rllib)
    apply_config_values(config, point.rllib)
    return config


def _set_environment(
    config: AlgorithmConfig, study: Study, point: TrialPoint, stack: ApiStack
) -> None:
    env = study.env
    if env.id == SYNTHETIC_ID:
        assert env.obs_shape is not None  # The spec validates this.
        if stack == "new" and env.obs_dtype == "uint8":
            # RLlib's new-stack modules feed observations to their layers as stored
            # (Linear/Conv2d on uint8 fail), while the old stack casts them to float.
            raise SpecError(
                f"{SYNTHETIC_ID} with obs_dtype uint8 runs on RLlib's old API stack only "
                f"(the new stack's torch models take float32); framework {point.framework} "
                "is on the new stack: set api_stack: old or obs_dtype: float32"
            )
        config.environment(
            env=SyntheticEnv,
            env_config=synthetic_env_config(
                env.obs_shape, env.obs_dtype, env.episode_len, point.seed
            ),
        )
    elif env.is_atari and stack == "new":
        config.environment(
            env=AtariEnv, env_config={"id": env.id, "preprocess": env.atari_preprocessing}
        )
    elif env.is_atari:
        # RLlib's old-stack path: the "ale_py:" prefix makes RLlib register ALE ids in
        # each env runner; with preprocessor_pref="deepmind" its RolloutWorker applies
        # the DeepMind wrappers (84×84 grey, max-and-skip 4 - hence frameskip=1 in the
        # emulator - and, with model.framestack, 4 stacked uint8 frames).
        if env.atari_preprocessing:
            config.environment(env=f"ale_py:{env.id}", env_config={"frameskip": 1})
            config.env_runners(preprocessor_pref="deepmind")
        else:
            config.environment(env=f"ale_py:{env.id}")
            config.env_runners(preprocessor_pref=None)
    elif env.kind in ("module", "file"):
        config.environment(
            env=env_class(env.id, multi_agent=env.multi_agent is not None),
            env_config=dict(env.env_config),
        )
        if env.multi_agent is not None:
            ma = env.multi_agent
            config.multi_agent(
                policies=set(ma.policies),
                policy_mapping_fn=AgentMapping(tuple(ma.mapping.items()), ma.policies[0]),
            )
    else:
        config.environment(env=env.id, env_config=dict(env.env_config))


def _set_resources(
    config: AlgorithmConfig, study: Study, point: TrialPoint, stack: ApiStack
) -> None:
    resources = study.resources
    # RLlib annotates these CPU counts as int but takes (and packs) fractions.
    config.env_runners(
        num_env_runners=point.num_workers,
        num_cpus_per_env_runner=resources.cpus_per_env_runner,  # type: ignore[arg-type]
    )
    config.resources(num_cpus_for_main_process=resources.cpus_per_trainable)  # type: ignore[arg-type]
    if stack == "new":
        # The new stack's main bundle is max(main process, local learner) CPUs and the
        # learner defaults to 1 CPU: the learner lives in the trainable's process, so it
        # gets the trainable's share and a fractional cpus_per_trainable is honoured.
        config.learners(num_learners=0, num_cpus_per_learner=resources.cpus_per_trainable)


def _set_training(
    config: AlgorithmConfig, study: Study, point: TrialPoint, stack: ApiStack
) -> None:
    training = study.training
    config.env_runners(
        num_envs_per_env_runner=training.num_envs_per_env_runner,
        rollout_fragment_length=training.rollout_fragment_length,
    )
    if stack == "old":
        config.env_runners(compress_observations=training.compress_observations)
    config.training(train_batch_size=training.train_batch_size)
    if study.algorithm == "PPO":
        # PPO cuts each train batch into minibatches (RLlib's default: 128) and refuses
        # a config whose train batch is smaller than one minibatch.
        default_minibatch = int(getattr(config, "minibatch_size", None) or 128)
        config.training(minibatch_size=min(default_minibatch, training.train_batch_size))
    if study.algorithm in REPLAY_ALGORITHMS or (
        study.algorithm not in ALGORITHMS and has_replay_buffer(config) and point.replay_capacity
    ):
        buffer: dict[str, Any] = {"capacity": point.replay_capacity}
        if study.algorithm not in REPLAY_ALGORITHMS:
            # Another algorithm's own buffer (CQL, DreamerV3): its settings, our capacity.
            buffer = {**config.replay_buffer_config, **buffer}  # type: ignore[attr-defined]
            config.training(replay_buffer_config=buffer)  # type: ignore[call-arg]
            return
        if stack == "old":
            buffer["type"] = OLD_STACK_REPLAY_BUFFER
        # DQN's and SAC's own settings: keyword arguments of their config classes'
        # training(), which the AlgorithmConfig type does not list.
        replay: dict[str, Any] = {
            "replay_buffer_config": buffer,
            "num_steps_sampled_before_learning_starts": training.learning_starts,
        }
        if training.training_intensity is not None:
            replay["training_intensity"] = training.training_intensity
        config.training(**replay)


def conv_filters(model: ModelSpec) -> list[tuple[int, tuple[int, int], int]] | None:
    """``ModelSpec.conv`` rows as RLlib's ``conv_filters``: ``(filters, (k, k), stride)``."""
    if not model.conv:
        return None
    return [(filters, (kernel, kernel), stride) for filters, kernel, stride in model.conv]


def _set_model(config: AlgorithmConfig, study: Study, model: ModelSpec, stack: ApiStack) -> None:
    hidden = list(model.hidden)
    filters = conv_filters(model)
    if study.algorithm == "DQN":
        # Plain Q-network on both stacks (see the module docstring); a DQN-only keyword.
        plain_q: dict[str, Any] = {"dueling": False}
        config.training(**plain_q)
    if stack == "new":
        if not hidden and not filters:
            raise SpecError(
                f"model {model.label}: RLlib's new API stack needs at least one dense "
                "layer, e.g. [64]"
            )
        from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

        if filters:
            model_config = DefaultModelConfig(
                conv_filters=list[Any](filters), head_fcnet_hiddens=hidden
            )
        else:
            model_config = DefaultModelConfig(fcnet_hiddens=hidden, head_fcnet_hiddens=[])
        config.rl_module(model_config=model_config)
        return

    old: dict[str, Any] = {"fcnet_hiddens": hidden}
    if filters:
        old.update(conv_filters=[[f, list(k), s] for f, k, s in filters], post_fcnet_hiddens=hidden)
    if study.env.is_atari and study.env.atari_preprocessing:
        old.update(dim=ATARI_DIM_PX, framestack=True)
    # Algorithm-specific keyword arguments of training(), as in _set_training.
    specific: dict[str, Any] = {}
    if study.algorithm == "SAC":
        # Old-stack SAC builds its networks from these two dicts, not from `model`.
        specific.update(q_model_config=dict(old), policy_model_config=dict(old))
    else:
        specific["model"] = old
    if study.algorithm == "DQN":
        specific["hiddens"] = []
    config.training(**specific)

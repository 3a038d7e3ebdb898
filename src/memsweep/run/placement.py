"""A trial's placement group, computed from its spec without importing RLlib.

Tune asks the trainable for its resources (``default_resource_request``) in the driver,
the process that runs ``memsweep run``. RLlib's own answer,
``Algorithm.default_resource_request``, needs RLlib imported (and TensorFlow, for a tf
trial) and a validated ``AlgorithmConfig`` (for old-stack DQN that allocates a dummy
replay buffer of full capacity): about 1 GB of RSS in the driver, on the node memsweep
measures. This module applies RLlib 2.60's documented rules to the
:class:`RllibResources` a trial's config has instead:

- the main process: ``num_cpus_for_main_process`` CPUs (old stack: plus ``num_gpus``);
  on the new stack with ``num_learners == 0`` the local learner lives there too, so
  ``max(num_cpus_per_learner, num_cpus_for_main_process)`` CPUs and
  ``num_gpus_per_learner`` GPUs (``"auto"`` CPUs per learner: 1 without GPUs, else 0);
  plus ``custom_resources_for_main_process``;
- one bundle per remote env runner: ``num_cpus_per_env_runner``,
  ``num_gpus_per_env_runner``, ``custom_resources_per_env_runner``;
- evaluation env runners (``evaluation_num_env_runners`` > 0 or an
  ``evaluation_interval``, unless off-policy estimation replaces them), with the
  ``evaluation_config`` overrides; offline evaluation runners likewise;
- new stack: one bundle per remote learner (its CPUs plus one per aggregator actor), or
  one 1-CPU bundle per aggregator actor without remote learners.

Those rules are ``ray/rllib/algorithms/algorithm.py`` (``default_resource_request``)
and ``algorithms/utils.py`` (``_get_*_bundles``) of Ray 2.60; ``tests/run/
test_placement.py`` checks, with RLlib imported, that the bundles equal RLlib's own for
memsweep's algorithms on both stacks, fractional CPUs, evaluation runners, remote
learners and a user's ``config:``.

Where the settings come from: memsweep's own resource settings
(:func:`trial_resources`, the same ones :func:`memsweep.run.workloads.build_config` sets)
over a base: RLlib's ``AlgorithmConfig`` defaults (:data:`RLLIB_DEFAULTS`) for memsweep's
four algorithms, or, when the study names another algorithm, RLlib keys or a user's
``config:``, the base read from the real config by the RLlib check's subprocess
(:mod:`memsweep.run.rllib_check`); then ``rllib:`` and the trial's RLlib-config factor
values that name a resource setting.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from memsweep.spec import Study, TrialPoint

if TYPE_CHECKING:
    from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
    from ray.tune import PlacementGroupFactory

Bundle = dict[str, float]
"""One placement-group bundle: resource name (``CPU``, ``GPU``, custom) → amount."""

_EVALUATION_OVERRIDABLE = (
    "num_cpus_per_env_runner",
    "num_gpus_per_env_runner",
    "custom_resources_per_env_runner",
    "off_policy_estimation_methods",
    "ope_split_batch_by_episode",
    "offline_evaluation_interval",
    "num_offline_eval_runners",
    "num_cpus_per_offline_eval_runner",
    "num_gpus_per_offline_eval_runner",
    "custom_resources_per_offline_eval_runner",
)
"""Settings an ``evaluation_config`` dict may override for the evaluation runners."""


@dataclass(frozen=True)
class RllibResources:
    """The ``AlgorithmConfig`` attributes (RLlib 2.60 names) that decide a trial's
    placement group; defaults are ``AlgorithmConfig()``'s. CPU and GPU counts are
    numbers of cores/devices, fractions allowed."""

    enable_rl_module_and_learner: bool = True
    placement_strategy: str = "PACK"
    num_cpus_for_main_process: float = 1
    num_gpus: float = 0
    """Old stack only: GPUs of the main process."""
    fake_gpus: bool = False
    """``_fake_gpus``: old stack, GPUs asked for but simulated (then 0 GPUs placed)."""
    custom_resources_for_main_process: Mapping[str, float] = field(default_factory=dict)
    num_env_runners: int = 0
    num_cpus_per_env_runner: float = 1
    num_gpus_per_env_runner: float = 0
    custom_resources_per_env_runner: Mapping[str, float] = field(default_factory=dict)
    num_learners: int = 0
    num_cpus_per_learner: float | Literal["auto"] = "auto"
    num_gpus_per_learner: float = 0
    custom_resources_per_learner: Mapping[str, float] = field(default_factory=dict)
    num_aggregator_actors_per_learner: int = 0
    evaluation_num_env_runners: int = 0
    evaluation_interval: int | None = None
    evaluation_config: Mapping[str, Any] = field(default_factory=dict)
    """The ``evaluation_config`` overrides among :data:`_EVALUATION_OVERRIDABLE`."""
    off_policy_estimation_methods: bool = False
    """Whether any off-policy estimation method is configured."""
    ope_split_batch_by_episode: bool = True
    offline_evaluation_interval: int | None = None
    num_offline_eval_runners: int = 0
    num_cpus_per_offline_eval_runner: float = 1
    num_gpus_per_offline_eval_runner: float = 0
    custom_resources_per_offline_eval_runner: Mapping[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types (the RLlib check's subprocess hands it back this way)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RllibResources:
        """The inverse of :meth:`to_json`; unknown keys are an error (``TypeError``)."""
        return cls(**dict(data))

    def with_values(self, values: Mapping[str, Any]) -> RllibResources:
        """These settings with the config values ``values`` applied where they name one
        (``attr`` or ``attr.key`` of a dict attribute, as ``rllib:`` and factors do);
        other keys are not resource settings and are ignored."""
        names = {f.name for f in dataclasses.fields(self)}
        changes: dict[str, Any] = {}
        for key, value in values.items():
            attr, _, inner = key.partition(".")
            attr = "fake_gpus" if attr == "_fake_gpus" else attr
            if attr not in names:
                continue
            if inner:
                current = dict(changes.get(attr, getattr(self, attr)) or {})
                if attr == "evaluation_config" and inner not in _EVALUATION_OVERRIDABLE:
                    continue
                current[inner] = value
                changes[attr] = current
            elif attr == "evaluation_config":
                changes[attr] = _evaluation_overrides(value)
            elif attr == "off_policy_estimation_methods":
                changes[attr] = bool(value)
            else:
                changes[attr] = value
        return dataclasses.replace(self, **changes)


RLLIB_DEFAULTS = RllibResources()
"""``AlgorithmConfig()``'s settings, which DQN, SAC, PPO and APPO keep in Ray 2.60 except
the ones memsweep sets for every trial (APPO's default 2 env runners and 1 learner;
tested against RLlib)."""


def _plain(value: Any) -> Any:
    return dict(value) if isinstance(value, Mapping) else value


def _evaluation_overrides(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items() if k in _EVALUATION_OVERRIDABLE}
    # An AlgorithmConfig object as evaluation config: its own settings.
    return {k: _plain(getattr(value, k)) for k in _EVALUATION_OVERRIDABLE if hasattr(value, k)}


def resources_of(config: AlgorithmConfig) -> RllibResources:
    """Read :class:`RllibResources` from a real ``AlgorithmConfig`` (needs RLlib; used by
    the RLlib check's subprocess and the tests, never by the driver)."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(RllibResources):
        attr = "_fake_gpus" if f.name == "fake_gpus" else f.name
        value = getattr(config, attr)
        if f.name == "evaluation_config":
            value = _evaluation_overrides(value)
        elif f.name == "off_policy_estimation_methods":
            value = bool(value)
        values[f.name] = _plain(value) if isinstance(value, Mapping) else value
    return RllibResources(**values)


def trial_resources(
    study: Study, point: TrialPoint, base: RllibResources = RLLIB_DEFAULTS
) -> RllibResources:
    """The settings of one trial's config: ``base``, then what
    :func:`memsweep.run.workloads.build_config` sets (stack, env runners and CPU shares),
    then ``rllib:`` and the trial's RLlib-config factor values."""
    resources = study.resources
    new_stack = study.config is not None or point.api_stack(study) == "new"
    settings = dataclasses.replace(
        base,
        enable_rl_module_and_learner=new_stack,
        num_env_runners=point.num_workers,
        num_cpus_per_env_runner=resources.cpus_per_env_runner,
        num_cpus_for_main_process=resources.cpus_per_trainable,
    )
    if new_stack:
        settings = dataclasses.replace(
            settings, num_learners=0, num_cpus_per_learner=resources.cpus_per_trainable
        )
    return settings.with_values(study.rllib).with_values(point.rllib)


def _learner_cpus(settings: RllibResources) -> float:
    if settings.num_cpus_per_learner != "auto":
        return float(settings.num_cpus_per_learner)
    return 1.0 if settings.num_gpus_per_learner == 0 else 0.0


def _runner_bundles(cpus: float, gpus: float, custom: Mapping[str, float], n: int) -> list[Bundle]:
    return [{"CPU": cpus, "GPU": gpus, **custom} for _ in range(n)]


def bundles(settings: RllibResources) -> list[Bundle]:
    """The placement group's bundles, in RLlib's order: main process, env runners,
    evaluation env runners, offline evaluation runners, learners (or aggregators)."""
    s = settings
    if not s.enable_rl_module_and_learner:
        main: Bundle = {"CPU": s.num_cpus_for_main_process, "GPU": 0 if s.fake_gpus else s.num_gpus}
    elif s.num_learners == 0:
        main = {
            "CPU": max(_learner_cpus(s), s.num_cpus_for_main_process),
            "GPU": s.num_gpus_per_learner,
        }
    else:
        main = {"CPU": s.num_cpus_for_main_process, "GPU": 0}
    out = [{**main, **s.custom_resources_for_main_process}]
    out += _runner_bundles(
        s.num_cpus_per_env_runner,
        s.num_gpus_per_env_runner,
        s.custom_resources_per_env_runner,
        s.num_env_runners,
    )
    # The evaluation config: these settings with its overrides, num_env_runners from
    # evaluation_num_env_runners (AlgorithmConfig.get_evaluation_config_object).
    e = s.with_values(s.evaluation_config)
    offline_estimation = e.off_policy_estimation_methods and not e.ope_split_batch_by_episode
    if not offline_estimation and (s.evaluation_num_env_runners > 0 or s.evaluation_interval):
        out += _runner_bundles(
            e.num_cpus_per_env_runner,
            e.num_gpus_per_env_runner,
            e.custom_resources_per_env_runner,
            s.evaluation_num_env_runners,
        )
    if e.offline_evaluation_interval is not None or e.num_offline_eval_runners > 0:
        out += _runner_bundles(
            e.num_cpus_per_offline_eval_runner,
            e.num_gpus_per_offline_eval_runner,
            e.custom_resources_per_offline_eval_runner,
            e.num_offline_eval_runners,
        )
    if s.enable_rl_module_and_learner:
        if s.num_learners == 0:
            out += [{"CPU": 1} for _ in range(s.num_aggregator_actors_per_learner)]
        else:
            out += [
                {
                    "CPU": _learner_cpus(s) + s.num_aggregator_actors_per_learner,
                    "GPU": s.num_gpus_per_learner,
                    **s.custom_resources_per_learner,
                }
                for _ in range(s.num_learners)
            ]
    return out


def placement_group_factory(settings: RllibResources) -> PlacementGroupFactory:
    """Tune's ``PlacementGroupFactory`` for these settings (imports ``ray.tune`` only)."""
    from ray.tune import PlacementGroupFactory

    return PlacementGroupFactory(bundles=bundles(settings), strategy=settings.placement_strategy)

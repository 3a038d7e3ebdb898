"""The typed study: what a sweep file means, as frozen pydantic models.

:class:`Study` is one sweep file; :class:`TrialPoint` one trial's factor values. Loading
and error messages live in :mod:`memsweep.spec.load`, design expansion in
:mod:`memsweep.spec.design`.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from memsweep import result_keys as keys
from memsweep.errors import SpecError
from memsweep.spec.design import expand
from memsweep.units import parse_bytes

Framework = Literal["torch", "tf2", "tf2-eager"]
"""``torch``; ``tf2`` with eager tracing on (RLlib's default: traced ``tf.function``
graphs); ``tf2-eager`` with eager tracing off (every op runs eagerly)."""

FRAMEWORKS: tuple[Framework, ...] = ("torch", "tf2", "tf2-eager")
ALGORITHMS = ("DQN", "SAC", "APPO", "PPO")
"""The algorithms memsweep has run and tuned its defaults for. ``algorithm:`` takes any
name RLlib registers (``ray.rllib.algorithms.registry``), checked by
:mod:`memsweep.run.rllib_check` before Ray starts."""

REPLAY_ALGORITHMS = frozenset({"DQN", "SAC"})
NO_REPLAY_ALGORITHMS = frozenset({"APPO", "PPO", "IMPALA", "BC", "MARWIL", "IQL"})
"""Registered algorithms known here to have no replay buffer (RLlib 2.60's default
configs carry no ``replay_buffer_config`` capacity); the others are asked at check time."""

FactorValue = bool | int | float | str
"""One level of an RLlib-config factor: a JSON scalar."""

_ENV_ID_RE = re.compile(r"^(?:[A-Za-z0-9_.-]+/)?[A-Za-z0-9_.-]{1,100}$")
_ENTRY_POINT_RE = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
FILE_ENTRY_POINT_RE = re.compile(r"^[^:\x00]{1,1000}\.py:[A-Za-z_]\w*$")
"""``path/to/file.py:Name``: a Python file (relative to the sweep file) and a name in it."""
_CONFIG_KEY_RE = re.compile(r"^[a-z_][a-z0-9_]*(?:\.[A-Za-z0-9_]+)?$")


class _Frozen(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
        strict=False,
        allow_inf_nan=False,
    )


class ModelSpec(_Frozen):
    """A network: optional conv stack, then dense layers. Same shape for Q/policy/value."""

    hidden: tuple[Annotated[int, Field(gt=0, le=65536)], ...] = (256, 256)
    """Dense layer sizes, e.g. ``[256, 256]``."""

    conv: tuple[tuple[int, int, int], ...] | None = None
    """Conv stack as ``[filters, kernel, stride]`` rows, for image observations."""

    @field_validator("conv")
    @classmethod
    def _conv_positive(
        cls, value: tuple[tuple[int, int, int], ...] | None
    ) -> tuple[tuple[int, int, int], ...] | None:
        for row in value or ():
            if min(row) <= 0:
                raise ValueError(
                    f"every conv row [filters, kernel, stride] must be > 0, got {list(row)}"
                )
        return value

    @property
    def label(self) -> str:
        """Short, stable name: ``256x256`` or ``c32k8s4-c64k4s2+512``."""
        dense = "x".join(str(h) for h in self.hidden) or "linear"
        if not self.conv:
            return dense
        convs = "-".join(f"c{f}k{k}s{s}" for f, k, s in self.conv)
        return f"{convs}+{dense}"


def _model_from_yaml(value: Any) -> Any:
    """Accept ``[64, 64]``, ``"64,64"`` or ``{hidden: [...], conv: [[...]]}``."""
    if isinstance(value, str):
        try:
            return {"hidden": [int(part) for part in value.split(",") if part.strip()]}
        except ValueError as exc:
            raise ValueError(
                f"a model string lists layer sizes like '256,256', got {value!r}"
            ) from exc
    if isinstance(value, list):
        return {"hidden": value}
    return value


def check_config_key(key: str, where: str) -> str:
    """``key`` if it can name an ``AlgorithmConfig`` attribute (``train_batch_size_per_learner``)
    or a key inside one of its dicts (``env_config.size``); ``ValueError`` otherwise.
    Whether RLlib has it is checked by :mod:`memsweep.run.rllib_check`."""
    if not _CONFIG_KEY_RE.match(key):
        raise ValueError(
            f"{where}: {key!r} is not an RLlib config key: use an AlgorithmConfig attribute "
            "like train_batch_size_per_learner, or one key inside a dict attribute like "
            "env_config.size"
        )
    return key


class Factors(_Frozen):
    """The knobs that cost memory; each lists the values the study tries. Besides the four
    built-in ones, any RLlib ``AlgorithmConfig`` attribute may be a factor, written at the
    same level (``train_batch_size_per_learner: [2000, 8000]``, ``env_config.size: [8, 64]``)."""

    replay_capacity: tuple[Annotated[int, Field(ge=0, le=10**12)], ...] = (50_000,)
    """Replay-buffer capacity in transitions (DQN, SAC). 0 means the algorithm has none."""

    model: tuple[ModelSpec, ...] = (ModelSpec(),)
    """Networks to try: ``[64, 64]``, ``"256,256"`` or ``{conv: [[32,8,4]], hidden: [512]}``."""

    num_workers: tuple[Annotated[int, Field(ge=0, le=256)], ...] = (1,)
    """RLlib ``num_env_runners``: remote env-runner actors (0 = sample in the trainable)."""

    framework: tuple[Framework, ...] = ("torch",)
    """``torch`` (new API stack), ``tf2`` (old stack, traced) or ``tf2-eager`` (old stack)."""

    rllib: dict[str, tuple[FactorValue, ...]] = Field(default_factory=dict)
    """Any other factor: an RLlib ``AlgorithmConfig`` attribute (or ``dict_attr.key``) →
    its values, e.g. ``train_batch_size_per_learner: [2000, 8000, 32000]``,
    ``num_envs_per_env_runner: [1, 8]``, ``evaluation_num_env_runners: [0, 2]``,
    ``env_config.size: [8, 64]``. Written flat in ``factors:`` (collected here), set on the
    AlgorithmConfig after memsweep's own settings, checked against RLlib's real config
    before Ray starts."""

    @model_validator(mode="before")
    @classmethod
    def _collect_config_factors(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        own = set(cls.model_fields)
        extra = {key: v for key, v in value.items() if key not in own}
        if not extra:
            return value
        nested = value.get("rllib") or {}
        if not isinstance(nested, dict):
            return value  # The field's own validation names the problem.
        for key in extra:
            if not isinstance(key, str):
                raise ValueError(f"factors: a factor name is a string, got {key!r}")
            check_config_key(key, f"factors.{key}")
            if key in nested:
                raise ValueError(f"factors.{key} is given twice (flat and under rllib)")
        kept = {key: v for key, v in value.items() if key in own}
        return {**kept, "rllib": {**nested, **extra}}

    @field_validator("rllib", mode="before")
    @classmethod
    def _config_levels(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        out: dict[str, Any] = {}
        for key, levels in value.items():
            check_config_key(str(key), f"factors.{key}")
            out[key] = levels if isinstance(levels, list | tuple) else [levels]
        return out

    @field_validator("model", mode="before")
    @classmethod
    def _models(cls, value: Any) -> Any:
        if isinstance(value, list | tuple) and value and all(isinstance(v, int) for v in value):
            # ``model: [64, 64]`` is one model, not two.
            return [_model_from_yaml(list(value))]
        if not isinstance(value, list | tuple):
            value = [value]
        return [_model_from_yaml(v) for v in value]

    @field_validator("replay_capacity", "num_workers", "framework", mode="before")
    @classmethod
    def _scalar_to_list(cls, value: Any) -> Any:
        return value if isinstance(value, list | tuple) else [value]

    @model_validator(mode="after")
    def _non_empty_unique(self) -> Factors:
        for name in ("replay_capacity", "model", "num_workers", "framework"):
            values = getattr(self, name)
            if not values:
                raise ValueError(f"{name} needs at least one value")
            if len(set(values)) != len(values):
                raise ValueError(f"{name} lists a value twice: {[_show(v) for v in values]}")
        for name, levels in self.rllib.items():
            if not levels:
                raise ValueError(f"{name} needs at least one value")
            if len({(type(v), v) for v in levels}) != len(levels):
                raise ValueError(f"{name} lists a value twice: {list(levels)}")
        return self

    def levels(self) -> list[tuple[str, tuple[Any, ...]]]:
        """Every factor with its levels, in design order: the four built-ins, then the
        RLlib-config factors in file order."""
        return [(name, getattr(self, name)) for name in FACTOR_NAMES] + list(self.rllib.items())


def _show(value: Any) -> Any:
    return value.label if isinstance(value, ModelSpec) else value


class MultiAgentSpec(_Frozen):
    """Multi-agent training: the policies (RLModules) and which agent each one controls."""

    policies: tuple[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")], ...]
    """Policy ids, e.g. ``[p0, p1]``: one RLModule each, all of the study's model."""

    mapping: dict[str, str] = Field(default_factory=dict)
    """Agent id → policy id, e.g. ``{agent_0: p0, agent_1: p1}``. An agent not listed
    is mapped to the first policy."""

    @model_validator(mode="after")
    def _known_policies(self) -> MultiAgentSpec:
        if not self.policies:
            raise ValueError("multi_agent.policies needs at least one policy id, e.g. [p0, p1]")
        if len(set(self.policies)) != len(self.policies):
            raise ValueError(f"multi_agent.policies lists a policy twice: {list(self.policies)}")
        for agent, policy in self.mapping.items():
            if policy not in self.policies:
                raise ValueError(
                    f"multi_agent.mapping.{agent}: {policy!r} is not one of the policies "
                    f"{list(self.policies)}"
                )
        return self

    def policy_of(self, agent_id: Any) -> str:
        """The policy that controls ``agent_id`` (the first policy when unmapped)."""
        return self.mapping.get(str(agent_id), self.policies[0])


EnvKind = Literal["gymnasium", "synthetic", "module", "file"]


class EnvSpec(_Frozen):
    """The environment. CartPole by default; a synthetic env for chosen observation sizes;
    or the user's own env class by entry point."""

    id: str = "CartPole-v1"
    """A gymnasium id (``CartPole-v1``, ``ALE/Pong-v5``), ``memsweep/Synthetic-v0``, an
    entry point ``package.module:EnvClass`` (imported in every Ray worker, like an
    installed package), or a file ``envs/my_env.py:MyEnv`` relative to the sweep file
    (shipped to Ray's workers by value). An entry point is code the sweep's author asks
    memsweep to import: ``memsweep validate`` imports it to check it is an env class.
    RLlib builds the class as ``EnvClass(env_config)``."""

    env_config: dict[str, Any] = Field(default_factory=dict)
    """Passed to the env class (RLlib's ``env_config``); for a gymnasium id, keyword
    arguments of ``gymnasium.make``. A key can be a factor: ``factors: {env_config.size: [8, 64]}``."""

    multi_agent: MultiAgentSpec | None = None
    """For a ``MultiAgentEnv``: ``{policies: [p0, p1], mapping: {agent_0: p0, agent_1: p1}}``."""

    obs_shape: tuple[Annotated[int, Field(gt=0)], ...] | None = None
    """``memsweep/Synthetic-v0`` only: observation shape, e.g. ``[1024]`` or ``[84, 84, 4]``."""

    obs_dtype: Literal["float32", "uint8"] = "float32"
    """``memsweep/Synthetic-v0`` only: observation element type."""

    episode_len: Annotated[int, Field(gt=0)] = 200
    """``memsweep/Synthetic-v0`` only: steps per episode."""

    atari_preprocessing: bool = True
    """``ALE/*`` only: 84×84 grey frames stacked 4 deep (RLlib's standard Atari wrapping)."""

    @field_validator("id")
    @classmethod
    def _id_or_entry_point(cls, value: str) -> str:
        # gymnasium imports the module named before a ':' in an id ("pkg.mod:Env-v0"), so
        # an id with a ':' is taken as an entry point, imported by memsweep itself, never
        # handed to gymnasium.make.
        if _ENV_ID_RE.match(value) or _ENTRY_POINT_RE.match(value):
            return value
        if FILE_ENTRY_POINT_RE.match(value):
            return value
        raise ValueError(
            "an env is a gymnasium id like CartPole-v1 or ALE/Pong-v5, an entry point "
            "package.module:EnvClass, or a file envs/my_env.py:MyEnv"
        )

    @model_validator(mode="after")
    def _synthetic_needs_shape(self) -> EnvSpec:
        if self.is_synthetic and not self.obs_shape:
            raise ValueError("memsweep/Synthetic-v0 needs obs_shape, e.g. [1024] or [84, 84, 4]")
        if not self.is_synthetic and self.obs_shape:
            raise ValueError(
                f"obs_shape applies to memsweep/Synthetic-v0 only; {self.id} has its own"
            )
        if self.is_synthetic and self.env_config:
            raise ValueError(
                "env_config does not apply to memsweep/Synthetic-v0: use obs_shape, "
                "obs_dtype and episode_len"
            )
        if self.multi_agent is not None and self.kind not in ("module", "file"):
            raise ValueError(
                "multi_agent needs a MultiAgentEnv class by entry point "
                "(env: {id: package.module:MyEnv, multi_agent: ...})"
            )
        return self

    @property
    def kind(self) -> EnvKind:
        """``gymnasium``, ``synthetic``, ``module`` (``pkg.mod:Class``) or ``file`` (``x.py:Class``)."""
        if self.is_synthetic:
            return "synthetic"
        if _ENV_ID_RE.match(self.id):
            return "gymnasium"
        return "file" if FILE_ENTRY_POINT_RE.match(self.id) else "module"

    @property
    def label(self) -> str:
        """The env as the trials table names it: the id, or ``file.py:Class`` without its folder."""
        if self.kind == "file":
            return self.id.rsplit("/", 1)[-1]
        return self.id

    @property
    def is_synthetic(self) -> bool:
        return self.id == "memsweep/Synthetic-v0"

    @property
    def is_atari(self) -> bool:
        return self.id.startswith("ALE/")


MAXIMIZABLE = ("replay_capacity", "num_workers")
"""Factors a budget search can maximise: the numeric ones whose memory grows with them."""

FACTOR_NAMES = ("replay_capacity", "model", "num_workers", "framework")

_BUDGET_KEYS = ("budget", "maximize", "subject_to", "max_trials")


class SearchSpec(_Frozen):
    """How Tune picks trials from the factor values."""

    mode: Literal["grid", "random", "optuna", "qmc", "budget"] = "grid"
    """``grid`` runs the design below; ``random``/``optuna``/``qmc`` draw ``num_samples``
    points (``qmc`` is Optuna's quasi-Monte-Carlo space-filling sampler); ``budget`` finds
    the largest ``maximize`` whose peak stays under ``budget`` (docs/budget.md)."""

    design: Literal["full", "one_at_a_time", "half_fraction"] = "full"
    """Grid only: every combination; or a base point (first value of each factor) plus
    each factor varied alone: 1 + Σ(levels − 1) trials instead of Π levels; or half of a
    two-level factorial (3+ factors of 2 values each; the trials whose ±1 codes
    multiply to +1: main effects stay unconfounded). See docs/designs.md."""

    base_repeats: Annotated[int, Field(gt=0, le=100)] = 1
    """``one_at_a_time`` only: times the base point runs (each with its own seed),
    spread through the run order. The design fits one term per trial it has; each
    replicate adds a residual degree of freedom, so ``base_repeats: 4`` leaves 3 and a
    lost trial still leaves every factor fitted."""

    num_samples: Annotated[int, Field(gt=0, le=10_000)] = 8
    """``random``/``optuna``/``qmc``: how many trials to draw."""

    metric: str = "memory/peak_bytes"
    """``optuna``/``qmc``: the Tune result key the searcher optimises."""

    metric_mode: Literal["max", "min"] = "max"
    """``optuna``/``qmc``: maximise or minimise ``metric``."""

    budget: Annotated[int, Field(gt=0, le=2**60)] | None = None
    """``budget`` only, required: ``16GB``, ``512MiB`` or bytes. A candidate fits when its
    trial's peak (the largest Σ PSS of its processes: shared pages once; buffer full)
    stays at or under it."""

    maximize: str | dict[str, float] | None = None
    """``budget`` only, required: ``replay_capacity``, ``num_workers``, or weights for a
    combination, e.g. ``{replay_capacity: 1, num_workers: 10000}`` (score = Σ weight·value).
    The candidates are the values listed in ``factors`` (their product for several)."""

    subject_to: dict[str, Any] | None = None
    """``budget`` only: one fixed value for each factor that is not maximised and lists
    several in ``factors``, e.g. ``{model: "256,256", num_workers: 2, framework: torch}``."""

    max_trials: Annotated[int, Field(gt=0, le=100)] = 8
    """``budget`` only: at most this many trials, one at a time."""

    @field_validator("budget", mode="before")
    @classmethod
    def _budget_size(cls, value: Any) -> Any:
        return None if value is None else parse_bytes(value)

    @field_serializer("budget")
    def _budget_with_unit(self, value: int | None) -> str | None:
        # Dumped with its unit, so a dumped study validates again (sizes need a unit).
        return None if value is None else f"{value}B"

    @field_validator("maximize", mode="before")
    @classmethod
    def _maximize_factors(cls, value: Any) -> Any:
        if value is None:
            return None
        weights = value if isinstance(value, dict) else {value: 1.0}
        for name, weight in weights.items():
            if name not in MAXIMIZABLE:
                raise ValueError(
                    f"cannot maximise {name!r}: use {' or '.join(MAXIMIZABLE)}, or a mapping "
                    "of them to weights"
                )
            if isinstance(weight, bool) or not isinstance(weight, int | float):
                raise ValueError(f"the weight of {name} must be a number > 0, got {weight!r}")
            if not (weight > 0 and math.isfinite(weight)):
                raise ValueError(f"the weight of {name} must be a finite number > 0, got {weight}")
        if not weights:
            raise ValueError(f"name a factor to maximise: {' or '.join(MAXIMIZABLE)}")
        return value

    @model_validator(mode="after")
    def _budget_keys(self) -> SearchSpec:
        if self.base_repeats != 1 and (self.mode != "grid" or self.design != "one_at_a_time"):
            raise ValueError(
                f"base_repeats applies to design: one_at_a_time only (mode {self.mode}, "
                f"design {self.design}): set design: one_at_a_time or remove base_repeats"
            )
        if self.mode != "budget":
            # Values, not keys: a study comes back from its JSON form with every key set.
            given = [
                key
                for key in _BUDGET_KEYS
                if getattr(self, key) != type(self).model_fields[key].default
            ]
            if given:
                verb = "applies" if len(given) == 1 else "apply"
                raise ValueError(
                    f"{', '.join(given)} {verb} to mode: budget only (mode is {self.mode}): "
                    "set mode: budget or remove them"
                )
            return self
        if self.budget is None:
            raise ValueError("mode budget needs budget: the most a trial may use, e.g. 16GB")
        if self.maximize is None:
            raise ValueError(
                f"mode budget needs maximize: {' or '.join(MAXIMIZABLE)} "
                "(or weights, e.g. {replay_capacity: 1, num_workers: 10000})"
            )
        return self

    @property
    def weights(self) -> dict[str, float]:
        """Budget mode: weight per maximised factor (1 for a single factor name)."""
        if self.maximize is None:
            return {}
        if isinstance(self.maximize, str):
            return {self.maximize: 1.0}
        return {name: float(weight) for name, weight in self.maximize.items()}


class StopSpec(_Frozen):
    """When a trial ends: whichever limit comes first. At least one is required.

    For a memory study, stop on ``plateau_env_steps``: a trial then runs until it has
    what the analysis needs (its buffer full, then a plateau long enough to measure),
    however fast the machine samples; ``seconds`` stays as a guard, and a trial it stops
    is reported (``trials.parquet`` ``stop_reason: time_cap``, the end-of-run summary).
    ``memsweep validate`` estimates each trial's env steps and minutes to its plateau."""

    plateau_env_steps: Annotated[int, Field(gt=0)] | None = None
    """Env steps to run after the replay buffer first holds its capacity (the plateau);
    for an algorithm without a buffer, after the first result."""

    iterations: Annotated[int, Field(gt=0)] | None = None
    """Tune training iterations (one ``Algorithm.train()`` each)."""

    env_steps: Annotated[int, Field(gt=0)] | None = None
    """Environment steps sampled over the trial's lifetime."""

    seconds: Annotated[float, Field(gt=0)] | None = None
    """Training time of the trial (Tune's ``time_total_s``; set-up not included): a
    guard against a slow or loaded machine, not the way to end a memory study's trial.
    Left out next to ``plateau_env_steps``, each trial gets a guard of 30× its estimated
    training time (:mod:`memsweep.spec.plateau`)."""

    @model_validator(mode="after")
    def _one_limit(self) -> StopSpec:
        if (
            self.iterations is None
            and self.env_steps is None
            and self.seconds is None
            and self.plateau_env_steps is None
        ):
            raise ValueError(
                "set at least one of plateau_env_steps, iterations, env_steps, seconds"
            )
        return self

    def limits(self) -> dict[str, float]:
        """Tune result key → limit: a trial stops once ``result[key] >= limit``."""
        derived_cap = 1 if self.seconds is None and self.plateau_env_steps is not None else None
        pairs = (
            (keys.PLATEAU_ENV_STEPS, self.plateau_env_steps),
            (keys.ENV_STEPS, self.env_steps),
            ("training_iteration", self.iterations),
            ("time_total_s", self.seconds),
            (keys.TIME_CAPPED, derived_cap),
        )
        return {key: limit for key, limit in pairs if limit is not None}

    def reason(self, result: Mapping[str, Any]) -> str | None:
        """Which limit a trial's last result reached, first in the order plateau,
        env_steps, iterations, time cap (``result_keys.STOP_*``); None if none did
        (another stopper, such as a budget search's, ended it)."""
        reasons = {
            keys.PLATEAU_ENV_STEPS: keys.STOP_PLATEAU,
            keys.ENV_STEPS: keys.STOP_ENV_STEPS,
            "training_iteration": keys.STOP_ITERATIONS,
            "time_total_s": keys.STOP_TIME_CAP,
            keys.TIME_CAPPED: keys.STOP_TIME_CAP,
        }
        for key, limit in self.limits().items():
            value = result.get(key)
            if value is not None and value >= limit:
                return reasons[key]
        return None


class ResourceSpec(_Frozen):
    """Per-trial resources. Memory is what is studied, not speed, so env runners get a
    fraction of a CPU by default and a 2-core laptop still places 8 of them."""

    cpus_per_trainable: Annotated[float, Field(gt=0)] = 1.0
    """CPUs reserved for the trial's trainable (the algorithm's main process)."""

    cpus_per_env_runner: Annotated[float, Field(ge=0)] = 0.1
    """CPUs reserved per remote env runner (fractional: see above)."""

    max_concurrent_trials: Annotated[int, Field(ge=0)] = 1
    """Trials running at once (0 = as many as fit). One at a time keeps them from
    competing for CPU, which would slow sampling, not change memory."""

    memory_budget: Annotated[int, Field(gt=0, le=2**60)] | None = None
    """Optional: ``16GB``, ``512MiB`` or bytes. memsweep stops a trial (status
    ``over_budget``) once it holds more (``budget_scope: trial``) or its node uses more
    (``node``), checked at every flush, so a sweep on a shared machine stops short of
    taking it down. Unset: only Ray's and the kernel's OOM killers stop a trial."""

    budget_scope: Literal["trial", "node"] = "trial"
    """``trial``: Σ PSS of the trial's processes (shared pages once, as in its peak);
    ``node``: the node's used memory (then the trial with the most there is stopped)."""

    @field_validator("memory_budget", mode="before")
    @classmethod
    def _budget_size(cls, value: Any) -> Any:
        return None if value is None else parse_bytes(value)

    @field_serializer("memory_budget")
    def _memory_budget_with_unit(self, value: int | None) -> str | None:
        return None if value is None else f"{value}B"


class TrainingSpec(_Frozen):
    """Algorithm settings that change speed or memory but are not studied factors."""

    num_envs_per_env_runner: Annotated[int, Field(gt=0, le=1024)] = 1
    """Vectorised sub-environments per env runner."""

    learning_starts: Annotated[int, Field(ge=0)] = 1000
    """Env steps sampled before the first gradient update (replay algorithms)."""

    train_batch_size: Annotated[int, Field(gt=0)] = 32
    """Transitions per gradient update (DQN, SAC); PPO/APPO: the per-iteration batch."""

    training_intensity: Annotated[float, Field(gt=0)] | None = 0.25
    """Replay algorithms (DQN and SAC alike): trained ÷ sampled steps. memsweep studies
    memory, not learning, so the default is low (one 32-transition update per 128 env
    steps): buffers fill fast (SAC at RLlib's own default samples ~10 env steps/s on
    2 cores, and a 5,000 buffer does not fill in 4 minutes). ``null``: RLlib's default."""

    compress_observations: bool = False
    """Old API stack only: LZ4-compress stored observations (RLlib's ``compress_observations``)."""

    rollout_fragment_length: Annotated[int, Field(gt=0)] | Literal["auto"] = "auto"
    """Steps each env runner collects per sample call."""


class SamplingSpec(_Frozen):
    """How often memory is read and written."""

    interval_s: Annotated[float, Field(ge=0.005, le=60)] = 0.1
    """Seconds between two samples of a process's RSS, swap and peak RSS (10 Hz)."""

    full_interval_s: Annotated[float, Field(ge=0.005, le=600)] = 1.0
    """Seconds between two reads of USS/PSS (``/proc/PID/smaps_rollup``, costlier)."""

    flush_interval_s: Annotated[float, Field(gt=0, le=60)] = 2.0
    """Seconds between two Parquet files: what a crash can lose at most."""


class Study(_Frozen):
    """A memory study: one sweep file."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")]
    """Sweep name; results go to ``results/<name>/`` unless ``storage`` says otherwise."""

    description: str = ""
    """What the study asks, in a sentence."""

    algorithm: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")] = "DQN"
    """Any algorithm RLlib registers (``ray.rllib.algorithms.registry``: APPO, BC, CQL,
    DQN, DreamerV3, IMPALA, IQL, MARWIL, PPO, SAC). memsweep's defaults are tuned for DQN,
    SAC (replay buffers), APPO and PPO (none); ``factors.replay_capacity`` applies only
    where the algorithm has a replay buffer (set it to [0] otherwise)."""

    rllib: dict[str, Any] = Field(default_factory=dict)
    """Any RLlib ``AlgorithmConfig`` attribute set to one value for every trial, e.g.
    ``{minibatch_size: 128, num_epochs: 1, evaluation_interval: 1}``; ``dict_attr.key``
    sets one key of a dict attribute. Applied after memsweep's own settings and before the
    factors; checked against RLlib's real config before Ray starts (unknown key: the
    nearest names). The attributes memsweep sets from its own keys are refused here."""

    config: str | None = None
    """Optional: ``path/to/train.py:make_config`` (relative to the sweep file) or
    ``package.module:make_config``, a function of no arguments returning an RLlib
    ``AlgorithmConfig``. memsweep imports it (a deliberate act of the sweep's author, like a
    Makefile; ``algorithm:`` must name the config's algorithm) and sets on top: the env
    (only when the config has none), ``num_env_runners`` (``factors.num_workers``), the CPU
    shares, the replay capacity where there is a buffer, the seed, ``rllib`` and the
    RLlib-config factors; the model and ``training`` stay the config's (the trials table's
    ``model`` column names it after the function). Torch on the new API stack only. The
    driver only reads the file; each trial runs the source it was sent."""

    api_stack: Literal["auto", "old"] = "auto"
    """``auto``: torch on RLlib's new API stack, TensorFlow on the old one (RLlib has TF
    only there). ``old``: torch on the old stack too, to compare frameworks on equal code."""

    env: EnvSpec = EnvSpec()
    factors: Factors = Factors()
    search: SearchSpec = SearchSpec()
    stop: StopSpec = StopSpec(iterations=10)
    resources: ResourceSpec = ResourceSpec()
    training: TrainingSpec = TrainingSpec()
    sampling: SamplingSpec = SamplingSpec()

    repeats: Annotated[int, Field(gt=0, le=100)] = 1
    """Trials per design point, each with its own seed."""

    seed: Annotated[int, Field(ge=0, le=2**31 - 101)] = 0
    """Seed of the first repeat; repeat ``r`` uses ``seed + r``."""

    storage: str | None = None
    """Where results go: a local path or a ``pyarrow.fs`` URI (``s3://bucket/prefix``).
    Default ``results/<name>``."""

    @field_validator("env", mode="before")
    @classmethod
    def _env_from_string(cls, value: Any) -> Any:
        return {"id": value} if isinstance(value, str) else value

    @field_validator("rllib")
    @classmethod
    def _rllib_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            check_config_key(str(key), f"rllib.{key}")
        return value

    @field_validator("config")
    @classmethod
    def _config_entry_point(cls, value: str | None) -> str | None:
        if value is None or _ENTRY_POINT_RE.match(value) or FILE_ENTRY_POINT_RE.match(value):
            return value
        raise ValueError(
            "config names a function: path/to/train.py:make_config or package.module:make_config"
        )

    @model_validator(mode="after")
    def _consistent(self) -> Study:
        if self.search.mode != "budget":
            self._check_factors(self.factors)
            if self.search.design == "half_fraction":
                self._check_half_fraction()
            return self
        if self.repeats != 1:
            raise ValueError(
                f"search.mode budget runs one trial per candidate: set repeats: 1, "
                f"got {self.repeats}"
            )
        # Only the values the search can run must be runnable.
        self._check_factors(self.budget_factors())
        return self

    def _check_half_fraction(self) -> None:
        varied = [(name, len(values)) for name, values in self.factors.levels() if len(values) > 1]
        if len(varied) < 3 or any(count != 2 for _, count in varied):
            shown = ", ".join(f"{name} ({count})" for name, count in varied) or "none"
            raise ValueError(
                "search.design half_fraction needs 3 or more factors with exactly 2 values "
                f"each (varied here: {shown}); use design full or one_at_a_time, or mode "
                "qmc for factors with many values"
            )

    def _check_factors(self, factors: Factors) -> None:
        """Refuse factor values this algorithm, env and API stack cannot run. Algorithms
        memsweep does not know are checked against RLlib by :mod:`memsweep.run.rllib_check`."""
        if self.algorithm in NO_REPLAY_ALGORITHMS and factors.replay_capacity != (0,):
            raise ValueError(
                f"factors.replay_capacity: algorithm {self.algorithm} has no replay buffer: "
                "set replay_capacity: [0], or use an algorithm with one (DQN, SAC)"
            )
        if self.algorithm in REPLAY_ALGORITHMS and 0 in factors.replay_capacity:
            raise ValueError(
                f"factors.replay_capacity: {self.algorithm} has a replay buffer: give a "
                "capacity > 0"
            )
        tf = [f for f in factors.framework if f.startswith("tf")]
        if tf and self.algorithm not in ("DQN", "PPO"):
            raise ValueError(
                f"{self.algorithm} with TensorFlow does not run on RLlib 2.60's old stack "
                "here: use framework torch"
            )
        if self.config is not None and (tf or self.api_stack == "old"):
            raise ValueError(
                "config (the user's AlgorithmConfig) runs torch on RLlib's new API stack "
                "only: use framework torch and api_stack auto"
            )
        if self.config is not None and factors.model != (ModelSpec(),):
            raise ValueError(
                "factors.model does not apply with config: the model is your config's "
                "(vary it with an RLlib-config factor instead)"
            )
        if self.env.multi_agent is not None and (tf or self.api_stack == "old"):
            raise ValueError(
                "env.multi_agent runs torch on RLlib's new API stack only here: use "
                "framework torch and api_stack auto"
            )
        overlap = sorted(set(self.rllib) & set(factors.rllib))
        if overlap:
            raise ValueError(
                f"rllib.{overlap[0]} is also a factor: keep it in one place (rllib: one "
                "value for every trial; factors: the values to vary)"
            )
        env_keys = sorted(
            key.removeprefix("env_config.")
            for key in factors.rllib
            if key.startswith("env_config.")
            and key.removeprefix("env_config.") in self.env.env_config
        )
        if env_keys:
            raise ValueError(
                f"factors.env_config.{env_keys[0]} is also set in env.env_config: keep it "
                "in one place"
            )
        if self.env.is_synthetic and any(k.startswith("env_config.") for k in factors.rllib):
            raise ValueError(
                "memsweep/Synthetic-v0 takes no env_config factor: vary obs_shape with one "
                "sweep per shape"
            )
        if (
            self.env.is_synthetic
            and self.env.obs_dtype == "uint8"
            and self.api_stack != "old"
            and "torch" in factors.framework
        ):
            raise ValueError(
                "memsweep/Synthetic-v0 with obs_dtype uint8 needs RLlib's old API stack (the "
                "new stack's torch models take float32): set api_stack: old or obs_dtype: float32"
            )
        if (
            self.training.compress_observations
            and self.api_stack != "old"
            and ("torch" in factors.framework)
        ):
            raise ValueError(
                "training.compress_observations exists on RLlib's old API stack only: "
                "set api_stack: old, or drop torch from factors.framework"
            )
        if self.env.is_atari and not any(m.conv for m in factors.model):
            raise ValueError(
                f"{self.env.id} has image observations: give factors.model a conv stack, "
                "e.g. {conv: [[32, 8, 4], [64, 4, 2], [64, 3, 1]], hidden: [512]}"
            )

    def points(self) -> list[TrialPoint]:
        """The trials the grid design runs, in order. Random/Optuna modes draw instead;
        budget mode: its candidates, i.e. what a plain grid over the same range runs."""
        f = self.budget_factors() if self.search.mode == "budget" else self.factors
        names = list(f.rllib)
        levels: list[tuple[Any, ...]] = [values for _, values in f.levels()]
        design = "full" if self.search.mode == "budget" else self.search.design
        combos = expand(levels, design, self.search.base_repeats)
        points = []
        runs: dict[str, int] = {}
        for combo in combos:
            # A replicated combination (the base point) continues its repeat numbering;
            # keyed by repr: RLlib-key values may be lists, which do not hash.
            first = runs.get(repr(combo), 0)
            runs[repr(combo)] = first + self.repeats
            points += [
                TrialPoint(
                    replay_capacity=combo[0],
                    model=combo[1],
                    num_workers=combo[2],
                    framework=combo[3],
                    rllib=dict(zip(names, combo[4:], strict=True)),
                    repeat=repeat,
                    seed=self.seed + repeat,
                )
                for repeat in range(first, first + self.repeats)
            ]
        return points

    def budget_factors(self) -> Factors:
        """Budget mode: the maximised factors with their listed values, every other factor
        with its one value (from ``search.subject_to`` or its one value in ``factors``).
        Raises ``ValueError`` naming the key when a factor is left open."""
        weights = self.search.weights
        fixed = dict(self.search.subject_to or {})
        for name in fixed:
            if name not in FACTOR_NAMES:
                close = difflib.get_close_matches(name, FACTOR_NAMES, n=1)
                hint = f" Did you mean '{close[0]}'?" if close else ""
                raise ValueError(
                    f"search.subject_to: unknown factor {name!r}.{hint} Factors: "
                    f"{', '.join(FACTOR_NAMES)}"
                )
            if name in weights:
                raise ValueError(
                    f"search.subject_to.{name}: {name} is maximised, it cannot also be fixed"
                )
        values: dict[str, Any] = {}
        for name in FACTOR_NAMES:
            listed = list(getattr(self.factors, name))
            shown = [_show(v) for v in listed]
            if name in weights:
                if len(listed) < 2:
                    raise ValueError(
                        f"search.maximize: {name} needs at least 2 values in factors.{name} "
                        f"to search among, got {shown}"
                    )
                values[name] = listed
            elif name in fixed:
                values[name] = [fixed[name]]
            elif len(listed) > 1:
                raise ValueError(
                    f"search.subject_to: factors.{name} lists {len(listed)} values {shown}; a "
                    f"budget search fixes every factor it does not maximise, e.g. "
                    f"subject_to: {{{name}: {shown[0]}}}"
                )
            else:
                values[name] = listed
        for name, levels in self.factors.rllib.items():
            if len(levels) > 1:
                raise ValueError(
                    f"search.maximize: a budget search varies replay_capacity or num_workers "
                    f"only; factors.{name} lists {len(levels)} values {list(levels)}: keep one"
                )
        values["rllib"] = dict(self.factors.rllib)
        try:
            return Factors.model_validate(values)
        except ValidationError as exc:
            error = exc.errors()[0]
            key = next((str(part) for part in error.get("loc", ()) if part in FACTOR_NAMES), "")
            message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
            raise ValueError(
                f"search.subject_to.{key}: {message}, got {short_value(fixed.get(key))}"
            ) from None

    def budget_score(self, point: TrialPoint) -> float:
        """Budget mode: Σ weight·value of the maximised factors at ``point``."""
        return sum(w * float(getattr(point, name)) for name, w in self.search.weights.items())

    def budget_candidates(self) -> list[TrialPoint]:
        """Budget mode: the candidate points, smallest score first."""
        return sorted(self.points(), key=self.budget_score)

    @property
    def storage_uri(self) -> str:
        return self.storage or f"results/{self.name}"

    @property
    def config_label(self) -> str | None:
        """With ``config:``, the model is the user's: the trials table names it after their
        function (``train.py:make_config``, without its folder); None without ``config:``."""
        return None if self.config is None else self.config.rsplit("/", 1)[-1]


class TrialPoint(_Frozen):
    """One trial's factor values: what a Tune trial's config carries."""

    replay_capacity: int
    model: ModelSpec
    num_workers: int
    framework: Framework
    rllib: dict[str, FactorValue] = Field(default_factory=dict)
    """The RLlib-config factors' values at this point (``factors.rllib``)."""
    repeat: int = 0
    seed: int = 0

    def api_stack(self, study: Study) -> Literal["new", "old"]:
        """Which RLlib API stack this trial runs on."""
        if self.framework != "torch" or study.api_stack == "old":
            return "old"
        return "new"

    def factor_values(self, model_label: str | None = None) -> dict[str, FactorValue]:
        """Every factor's value at this point: the four built-ins (the model as its label,
        or ``model_label``: :attr:`Study.config_label`), then each RLlib-config factor by
        its config key (``env_config.size``)."""
        return {
            "replay_capacity": self.replay_capacity,
            "model": model_label or self.model.label,
            "num_workers": self.num_workers,
            "framework": self.framework,
            **self.rllib,
        }

    def factors_json(self, model_label: str | None = None) -> str:
        """:meth:`factor_values` as the trials table's ``factors_json``: a JSON object,
        numbers as JSON numbers and everything else (booleans included) as strings."""
        return json.dumps(
            {
                name: value
                if isinstance(value, int | float) and not isinstance(value, bool)
                else str(value)
                for name, value in self.factor_values(model_label).items()
            },
            sort_keys=False,
        )

    def as_row(self, model_label: str | None = None) -> dict[str, Any]:
        """Flat, Parquet-friendly form (model as its label, or ``model_label``; every
        factor in ``factors_json``)."""
        return {
            "replay_capacity": self.replay_capacity,
            "model": model_label or self.model.label,
            "num_workers": self.num_workers,
            "framework": self.framework,
            "repeat": self.repeat,
            "seed": self.seed,
            "factors_json": self.factors_json(model_label),
        }


def short_value(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters: a message stays one readable line."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 5]}…({len(text)} chars)"


def point_from_config(study: Study, config: Mapping[str, Any]) -> TrialPoint:
    """A Tune trial's config → its :class:`TrialPoint`.

    Grid sweeps carry the whole point under ``"point"``; searchers (random, Optuna) draw
    flat keys, with the model given by its label (Optuna's categorical values must be
    plain strings).
    """
    if "point" in config:
        return TrialPoint.model_validate(config["point"])
    factors = study.budget_factors() if study.search.mode == "budget" else study.factors
    models = {model.label: model for model in factors.model}
    label = config["model"]
    if label not in models:
        raise SpecError(f"model {label!r} is not one of the study's: {sorted(models)}")
    repeat = int(config.get("repeat", 0))
    return TrialPoint(
        replay_capacity=int(config["replay_capacity"]),
        model=models[label],
        num_workers=int(config["num_workers"]),
        framework=config["framework"],
        rllib=dict(config.get("rllib") or {}),
        repeat=repeat,
        seed=int(config.get("seed", study.seed + repeat)),
    )

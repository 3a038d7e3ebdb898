"""The typed study: what a sweep file means, as one frozen pydantic model.

:class:`Study` is one sweep file; its parts live beside it (:mod:`~memsweep.spec.factors`,
:mod:`~memsweep.spec.env`, :mod:`~memsweep.spec.search`, :mod:`~memsweep.spec.settings`)
and one trial's factor values in :mod:`~memsweep.spec.point`. Loading and error messages
live in :mod:`memsweep.spec.load`, design expansion in :mod:`memsweep.spec.design`.
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from memsweep.spec.base import (
    ENTRY_POINT_RE,
    FILE_ENTRY_POINT_RE,
    Frozen,
    check_config_key,
    short_value,
)
from memsweep.spec.design import expand
from memsweep.spec.env import EnvSpec
from memsweep.spec.factors import FACTOR_NAMES, Factors, ModelSpec, show_level
from memsweep.spec.point import TrialPoint
from memsweep.spec.search import SearchSpec
from memsweep.spec.settings import ResourceSpec, SamplingSpec, StopSpec, TrainingSpec

ALGORITHMS = ("DQN", "SAC", "APPO", "PPO")
"""The algorithms memsweep has run and tuned its defaults for. ``algorithm:`` takes any
name RLlib registers (``ray.rllib.algorithms.registry``), checked by
:mod:`memsweep.run.rllib_check` before Ray starts."""

REPLAY_ALGORITHMS = frozenset({"DQN", "SAC"})
NO_REPLAY_ALGORITHMS = frozenset({"APPO", "PPO", "IMPALA", "BC", "MARWIL", "IQL"})
"""Registered algorithms known here to have no replay buffer (RLlib 2.60's default
configs carry no ``replay_buffer_config`` capacity); the others are asked at check time."""


class Study(Frozen):
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

    @model_validator(mode="before")
    @classmethod
    def _no_buffer_no_capacity(cls, value: Any) -> Any:
        """An algorithm memsweep knows has no replay buffer studies capacity 0 when the
        file gives none (the default, 50,000, is for DQN and SAC)."""
        if not isinstance(value, dict) or value.get("algorithm") not in NO_REPLAY_ALGORITHMS:
            return value
        factors = value.get("factors")
        if factors is None:
            return {**value, "factors": {"replay_capacity": [0]}}
        if isinstance(factors, dict) and "replay_capacity" not in factors:
            return {**value, "factors": {**factors, "replay_capacity": [0]}}
        return value

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
        if value is None or ENTRY_POINT_RE.match(value) or FILE_ENTRY_POINT_RE.match(value):
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
        combos = expand(levels, design, self.search.base_repeats, self.search.lone_level_repeats)
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
            shown = [show_level(v) for v in listed]
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

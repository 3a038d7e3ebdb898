"""The studied factors: the network (:class:`ModelSpec`) and the knobs that cost memory
(:class:`Factors`), each with the values a study tries."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from memsweep.spec.base import Frozen, check_config_key

Framework = Literal["torch", "tf2", "tf2-eager"]
"""``torch``; ``tf2`` with eager tracing on (RLlib's default: traced ``tf.function``
graphs); ``tf2-eager`` with eager tracing off (every op runs eagerly)."""

FRAMEWORKS: tuple[Framework, ...] = ("torch", "tf2", "tf2-eager")

FactorValue = bool | int | float | str
"""One level of an RLlib-config factor: a JSON scalar."""

FACTOR_NAMES = ("replay_capacity", "model", "num_workers", "framework")

MAXIMIZABLE = ("replay_capacity", "num_workers")
"""Factors a budget search can maximise: the numeric ones whose memory grows with them."""


class ModelSpec(Frozen):
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


class Factors(Frozen):
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
                raise ValueError(f"{name} lists a value twice: {[show_level(v) for v in values]}")
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


def show_level(value: Any) -> Any:
    """A factor level as a message shows it: a model by its label, anything else as is."""
    return value.label if isinstance(value, ModelSpec) else value

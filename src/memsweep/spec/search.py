"""How Tune picks a study's trials: grid designs, random/Optuna/QMC draws, or a budget
search (docs/budget.md)."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import Field, field_serializer, field_validator, model_validator

from memsweep.spec.base import Frozen
from memsweep.spec.factors import MAXIMIZABLE
from memsweep.units import parse_bytes

_BUDGET_KEYS = ("budget", "maximize", "subject_to", "max_trials")


class SearchSpec(Frozen):
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
    replicate adds a residual degree of freedom, so ``base_repeats: 4`` leaves 3. A lost
    moved trial still loses its factor when it was that factor's only one: see
    ``lone_level_repeats``."""

    lone_level_repeats: Annotated[int, Field(gt=0, le=100)] = 1
    """``one_at_a_time`` only: times each point runs that moves a factor to its only other
    level (its one trial is all that informs that factor). ``2`` means any one lost trial
    (an OOM kill, a crash, the time guard) still leaves every factor fitted; a replicated
    base point alone does not."""

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
        for key in ("base_repeats", "lone_level_repeats"):
            if getattr(self, key) != 1 and (self.mode != "grid" or self.design != "one_at_a_time"):
                raise ValueError(
                    f"{key} applies to design: one_at_a_time only (mode {self.mode}, "
                    f"design {self.design}): set design: one_at_a_time or remove {key}"
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

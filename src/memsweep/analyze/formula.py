"""Model terms: the built-in factors, how a numeric factor enters (its form) and the
design matrix of a formula (:class:`Formula`). The fits are in :mod:`memsweep.analyze.models`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

NUMERIC_FACTORS = ("replay_capacity", "model_params", "num_workers")
"""The built-in numeric factors (``model`` enters through its parameter count)."""

CATEGORICAL_FACTORS = ("framework",)
FACTORS = NUMERIC_FACTORS + CATEGORICAL_FACTORS
"""The built-in factors in the order they enter a model; any other factor of a sweep
(``factors_json``) follows them, numeric ones as a per-unit cost, others as offsets."""
CANDIDATE_INTERACTIONS: tuple[tuple[str, str], ...] = (
    ("num_workers", "model_params"),
    ("framework", "num_workers"),
    ("framework", "model_params"),
    ("framework", "replay_capacity"),
)
FormKind = Literal["linear", "log", "log1p", "power"]
POWER_GRID = tuple(round(p, 2) for p in np.arange(0.1, 3.0001, 0.1))
LINEAR_PREFERENCE = 0.05
"""``linear`` stays unless another form lowers LOO RMSE by more than this fraction."""

EFFECT_UNITS = {
    "replay_capacity": "bytes per transition",
    "model_params": "bytes per parameter",
    "num_workers": "bytes per env runner",
}
EFFECT_NAMES = {
    "replay_capacity": "bytes_per_transition",
    "model_params": "bytes_per_param",
    "num_workers": "bytes_per_worker",
}


def effect_name(factor: str) -> str:
    """The name of a numeric factor's marginal cost: ``bytes_per_transition`` for the
    built-ins, ``bytes_per_unit[NAME]`` for any other factor."""
    return EFFECT_NAMES.get(factor, f"bytes_per_unit[{factor}]")


def effect_unit(factor: str) -> str:
    """``bytes per transition`` for the built-ins, ``bytes per unit of NAME`` otherwise."""
    return EFFECT_UNITS.get(factor, f"bytes per unit of {factor}")


def offset_name(factor: str, level: str) -> str:
    """``framework_offset[tf2]``: a categorical level's offset from the base level."""
    return f"{factor}_offset[{level}]"


def is_numeric(values: pd.Series) -> bool:
    """A factor is numeric when every recorded value is a number."""
    present = values.dropna()
    if pd.api.types.is_numeric_dtype(present) and not pd.api.types.is_bool_dtype(present):
        return True
    return len(present) > 0 and all(
        isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)
        for v in present
    )


class ModelError(Exception):
    """A quantity cannot be fitted (too few trials for its terms)."""


@dataclass(frozen=True)
class Form:
    """How one numeric factor enters the model."""

    factor: str
    kind: FormKind = "linear"
    power: float = 1.0
    """Exponent of the ``power`` form."""

    scale: float = 1.0
    """Linear and power forms use x / scale (the largest measured value), so that a design
    column x^p stays near 1 and the least squares stay well conditioned; coefficients are
    converted back to natural units (bytes per transition, …) when reported."""

    @property
    def unit_factor(self) -> float:
        """Multiply a coefficient of this column by this to get natural units."""
        if self.kind == "linear":
            return 1.0 / self.scale
        if self.kind == "power":
            return float(self.scale ** (-self.power))
        return 1.0

    @property
    def column(self) -> str:
        """The design column's (and coefficient's) name: ``x``, ``x^p``, ``log(x)`` or
        ``log1p(x)``; x^1 is the linear form and is named ``x``."""
        if self.kind == "linear" or (self.kind == "power" and self.power == 1.0):
            return self.factor
        if self.kind == "power":
            return f"{self.factor}^{self.power:g}"
        return f"{self.kind}({self.factor})"

    def apply(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, np.dtype[np.float64]]:
        values = np.asarray(x, dtype=np.float64)
        if self.kind == "log":
            return np.log(np.maximum(values, 1e-300))
        if self.kind == "log1p":
            return np.log1p(np.maximum(values, 0.0))
        if self.kind == "power":
            return np.power(np.maximum(values / self.scale, 0.0), self.power)
        return values / self.scale


def factor_arrays(
    df: pd.DataFrame, formula: Formula | None = None
) -> dict[str, np.ndarray[Any, Any]]:
    """The factor columns of ``df`` as arrays: numeric as float, categorical as str.

    With ``formula``, its forms are numeric and its levels categorical; without, the
    built-in factors are (and any other column present is left out)."""
    out: dict[str, np.ndarray[Any, Any]] = {}
    numeric = [f.factor for f in formula.forms] if formula else list(NUMERIC_FACTORS)
    categorical = [n for n, _ in formula.levels] if formula else list(CATEGORICAL_FACTORS)
    for factor in numeric:
        if factor in df:
            out[factor] = pd.to_numeric(df[factor], errors="coerce").to_numpy(dtype=np.float64)
    for factor in categorical:
        if factor in df:
            out[factor] = df[factor].astype(str).to_numpy()
    return out


@dataclass(frozen=True)
class Formula:
    """The terms of a model: numeric forms, categorical levels, interactions."""

    forms: tuple[Form, ...]
    levels: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """Categorical factor → its levels, base level first."""

    interactions: tuple[tuple[str, str], ...] = ()

    def form(self, factor: str) -> Form | None:
        return next((f for f in self.forms if f.factor == factor), None)

    def factor_levels(self, factor: str) -> tuple[str, ...] | None:
        return next((lv for name, lv in self.levels if name == factor), None)

    @property
    def factors(self) -> tuple[str, ...]:
        return tuple(f.factor for f in self.forms) + tuple(name for name, _ in self.levels)

    def _factor_columns(
        self, factor: str, values: Mapping[str, np.ndarray[Any, Any]]
    ) -> dict[str, np.ndarray[Any, Any]]:
        form = self.form(factor)
        if form is not None:
            return {form.column: form.apply(values[factor])}
        levels = self.factor_levels(factor)
        if levels is None:
            raise KeyError(factor)
        column = values[factor]
        return {f"{factor}[{level}]": (column == level).astype(np.float64) for level in levels[1:]}

    def columns(
        self, values: Mapping[str, np.ndarray[Any, Any]], n: int
    ) -> dict[str, np.ndarray[Any, Any]]:
        """Design columns (with ``const``) from factor arrays (numeric: float, categorical: str)."""
        columns: dict[str, np.ndarray[Any, Any]] = {"const": np.ones(n)}
        for factor in self.factors:
            columns.update(self._factor_columns(factor, values))
        for a, b in self.interactions:
            for name_a, col_a in self._factor_columns(a, values).items():
                for name_b, col_b in self._factor_columns(b, values).items():
                    columns[f"{name_a}:{name_b}"] = col_a * col_b
        return columns

    def unit_factors(self) -> dict[str, float]:
        """Design column → factor turning its coefficient into natural units."""
        factors = {"const": 1.0}
        single: dict[str, dict[str, float]] = {}
        for factor in self.factors:
            form = self.form(factor)
            if form is not None:
                single[factor] = {form.column: form.unit_factor}
            else:
                levels = self.factor_levels(factor) or ()
                single[factor] = {f"{factor}[{level}]": 1.0 for level in levels[1:]}
            factors.update(single[factor])
        for a, b in self.interactions:
            for name_a, unit_a in single[a].items():
                for name_b, unit_b in single[b].items():
                    factors[f"{name_a}:{name_b}"] = unit_a * unit_b
        return factors

    def design(self, df: pd.DataFrame) -> pd.DataFrame:
        """The design matrix (with ``const``) for the rows of ``df``."""
        return pd.DataFrame(self.columns(factor_arrays(df, self), len(df)), index=df.index)

    def describe(self) -> str:
        terms = [f.column for f in self.forms] + [name for name, _ in self.levels]
        terms += [f"{a}×{b}" for a, b in self.interactions]
        return " + ".join(["1", *terms])

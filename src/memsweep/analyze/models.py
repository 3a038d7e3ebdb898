"""How trial-level memory depends on the factors: OLS fits, form choice, interactions.

**The model.** For a trial-level quantity ``Q`` (plateau or peak memory, bytes)::

    Q = β0 + f_cap(replay_capacity) + f_par(model_params) + f_w(num_workers)
          + framework offsets + selected interactions + ε

Numeric factors enter linearly unless the data prefer another form; ``framework`` is a
treatment-coded offset (base: ``torch`` when present). Candidate interactions are the
ones memory physics suggests: ``num_workers × model_params`` (each env runner holds a
copy of the model), ``framework × num_workers``, ``framework × model_params`` and
``framework × replay_capacity`` (another framework, another per-unit cost), so a
framework is an offset plus slopes, not a separate universe.

**Form choice (stated criterion).** For each numeric factor with at least three distinct
values, the forms ``linear`` (x), ``log`` (log x, or log(1 + x) when x can be 0) and
``power`` (x^p, p profiled over 0.1, 0.2, …, 3) are compared by leave-one-out cross-validated
RMSE in bytes, the other factors linear. The lowest wins, except that ``linear`` is kept
unless another form lowers the LOO RMSE by more than 5 % (bytes add up; a linear slope is
a cost per unit). A factor with two values is linear; one with one value is not fitted
(and said so).

**Interactions.** Added forward, one at a time, while the best addition lowers AIC by
more than 2, and only where the design allows: the design matrix keeps full rank and at
least two residual degrees of freedom.

Intervals are OLS (Student-t) at the analysis' confidence; prediction intervals are
for a new trial.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.linalg
import statsmodels.api as sm
from statsmodels.stats.outliers_influence import OLSInfluence

from memsweep.units import Estimate

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
        if self.kind == "linear":
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


@dataclass(frozen=True)
class Coefficient:
    """One fitted coefficient, in the unit of its term (bytes per unit of the column)."""

    term: str
    estimate: Estimate
    std_err: float
    p_value: float


@dataclass(frozen=True)
class Effect:
    """A derived, interpretable number: a marginal cost or an offset at a reference point."""

    name: str
    """``bytes_per_transition``, ``bytes_per_worker``, ``bytes_per_param`` or
    ``framework_offset[tf2]``."""

    unit: str
    estimate: Estimate
    at: dict[str, Any]
    """The reference point (factor values) where the derivative or offset is taken."""


@dataclass(frozen=True)
class FormChoice:
    """One candidate form of one factor and its cross-validated error."""

    factor: str
    form: str
    loo_rmse_bytes: float
    aic: float
    chosen: bool


@dataclass(frozen=True, eq=False)
class FittedModel:
    """A fitted quantity: coefficients, fit statistics, derived effects, ranges."""

    name: str
    """``plateau``, ``peak``, or ``plateau[env_runner]`` for one role."""

    formula: Formula
    n_trials: int
    coefficients: tuple[Coefficient, ...]
    r2: float
    adj_r2: float
    aic: float
    loo_rmse_bytes: float
    """Leave-one-out prediction error (root mean square), bytes; NaN when a trial is alone
    at its factor level (leaving it out leaves a term unfitted)."""

    loo_rel_error: float
    """LOO RMSE ÷ mean of the quantity."""

    resid_sd_bytes: float
    effects: tuple[Effect, ...]
    form_choices: tuple[FormChoice, ...]
    ranges: dict[str, tuple[float, float]]
    """Measured range of each numeric factor (for extrapolation warnings)."""

    trial_ids: tuple[str, ...]
    confidence: float
    result: Any = field(repr=False, default=None)
    """The statsmodels results object."""

    dropped: tuple[str, ...] = ()
    """Factors left out because the trials could not fit them, one sentence each."""

    zero_effects: tuple[Effect, ...] = ()
    """Per-unit costs fixed at 0 (their fit was negative, their interval reaches 0): the
    unconstrained estimate, so the report can say how small the cost is."""

    def predict(self, points: pd.DataFrame) -> pd.DataFrame:
        """Mean and intervals at ``points`` (one row per point, factor columns):
        ``mean``, ``mean_ci_lower/upper`` and ``obs_ci_lower/upper`` (a new trial)."""
        exog = self.formula.design(points)
        frame = self.result.get_prediction(exog).summary_frame(alpha=1 - self.confidence)
        frame.index = points.index
        return frame

    def coefficient(self, term: str) -> Coefficient:
        return next(c for c in self.coefficients if c.term == term)

    def effect(self, name: str) -> Effect | None:
        return next((e for e in self.effects if e.name == name), None)


def _full_rank(exog: pd.DataFrame) -> bool:
    scaled = exog / exog.abs().max().replace(0.0, 1.0)
    return bool(np.linalg.matrix_rank(scaled.to_numpy()) == exog.shape[1])


def _identifiable(formula: Formula, df: pd.DataFrame, min_df: int = 1) -> bool:
    exog = formula.design(df)
    return len(df) - exog.shape[1] >= min_df and _full_rank(exog)


def _ols(formula: Formula, df: pd.DataFrame, y: np.ndarray[Any, Any]) -> Any:
    return sm.OLS(y, formula.design(df)).fit()


def _lstsq_predict(
    formula: Formula,
    *,
    values: Mapping[str, np.ndarray[Any, Any]],
    y: np.ndarray[Any, Any],
    train: np.ndarray[Any, Any],
    test: np.ndarray[Any, Any],
) -> tuple[float, np.ndarray[Any, Any]]:
    """(residual sum of squares on ``train``, predictions on ``test``) by LAPACK least squares."""
    exog = np.column_stack(list(formula.columns(values, len(y)).values()))
    coef = scipy.linalg.lstsq(exog[train], y[train], lapack_driver="gelsy")[0]
    ssr = float(np.sum(np.square(y[train] - exog[train] @ coef)))
    return ssr, exog[test] @ coef


def _loo_rmse(formula: Formula, df: pd.DataFrame, y: np.ndarray[Any, Any]) -> float:
    """Leave-one-out RMSE; exact PRESS residuals, or refits when a power is profiled."""
    power = [f for f in formula.forms if f.kind == "power"]
    if not power:
        influence = OLSInfluence(_ols(formula, df, y))
        if np.max(influence.hat_matrix_diag) > 1 - 1e-8:
            # A trial alone at its factor level: leaving it out leaves that term unfitted.
            return math.nan
        return float(np.sqrt(np.mean(np.square(influence.resid_press))))
    values = factor_arrays(df, formula)
    everyone = np.arange(len(y))
    errors = []
    for i in everyone:
        train = everyone != i
        fitted = _profile_power(formula, power[0].factor, values, y, train)
        _, predicted = _lstsq_predict(fitted, values=values, y=y, train=train, test=everyone == i)
        errors.append(float(predicted[0] - y[i]))
    return float(np.sqrt(np.mean(np.square(errors))))


def _with_form(formula: Formula, form: Form) -> Formula:
    """``formula`` with ``form`` for its factor (keeping the factor's scale)."""
    old = formula.form(form.factor)
    scaled = replace(form, scale=old.scale) if old is not None else form
    forms = tuple(scaled if f.factor == form.factor else f for f in formula.forms)
    return replace(formula, forms=forms)


def _profile_power(
    formula: Formula,
    factor: str,
    values: Mapping[str, np.ndarray[Any, Any]],
    y: np.ndarray[Any, Any],
    train: np.ndarray[Any, Any] | None = None,
) -> Formula:
    """The exponent p of x^p with the least residual sum of squares (a grid profile)."""
    rows = np.ones(len(y), dtype=bool) if train is None else train
    best, best_ssr = formula, math.inf
    for p in POWER_GRID:
        candidate = _with_form(formula, Form(factor, "power", float(p)))
        ssr, _ = _lstsq_predict(candidate, values=values, y=y, train=rows, test=rows[:0])
        if ssr < best_ssr:
            best, best_ssr = candidate, ssr
    return best


def _forms_for(factor: str, values: np.ndarray[Any, Any]) -> list[Form]:
    forms = [Form(factor, "linear")]
    if len(np.unique(values)) >= 3:
        forms.append(Form(factor, "log" if np.all(values > 0) else "log1p"))
        forms.append(Form(factor, "power"))
    return forms


def choose_forms(
    formula: Formula, df: pd.DataFrame, y: np.ndarray[Any, Any]
) -> tuple[Formula, tuple[FormChoice, ...]]:
    """Pick each numeric factor's form by LOO RMSE (see the module docstring)."""
    choices: list[FormChoice] = []
    chosen = formula
    for form in formula.forms:
        values = df[form.factor].to_numpy(dtype=np.float64)
        rows = []
        for candidate in _forms_for(form.factor, values):
            trial = _with_form(formula, candidate)
            if candidate.kind == "power":
                trial = _profile_power(trial, form.factor, factor_arrays(df, trial), y)
            if not _identifiable(trial, df):
                continue
            result = _ols(trial, df, y)
            extra = 1 if candidate.kind == "power" else 0
            aic = float(result.aic + 2 * extra)
            used = trial.form(form.factor)
            assert used is not None
            rows.append((used, _loo_rmse(trial, df, y), aic))
        if not rows:
            continue
        linear = rows[0]
        best = min(rows, key=lambda r: r[1] if math.isfinite(r[1]) else math.inf)
        # A power of 1 is the linear form; an error at rounding level cannot be beaten.
        negligible = linear[1] <= 1e-9 * float(np.mean(np.abs(y)))
        better = best[1] < linear[1] * (1 - LINEAR_PREFERENCE)
        pick = best if better and not negligible and best[0].power != 1.0 else linear
        chosen = _with_form(chosen, pick[0])
        choices += [
            FormChoice(form.factor, f.column, rmse, aic, f == pick[0]) for f, rmse, aic in rows
        ]
    return chosen, tuple(choices)


def choose_interactions(formula: Formula, df: pd.DataFrame, y: np.ndarray[Any, Any]) -> Formula:
    """Forward selection of candidate interactions by AIC (ΔAIC < −2), where identifiable."""
    current = formula
    current_aic = float(_ols(current, df, y).aic)
    present = set(current.factors)
    candidates = [c for c in CANDIDATE_INTERACTIONS if c[0] in present and c[1] in present]
    while candidates:
        scored = []
        for pair in candidates:
            trial = replace(current, interactions=(*current.interactions, pair))
            if _identifiable(trial, df, min_df=2):
                scored.append((float(_ols(trial, df, y).aic), pair, trial))
        if not scored:
            break
        aic, pair, trial = min(scored, key=lambda s: s[0])
        if aic >= current_aic - 2:
            break
        current, current_aic = trial, aic
        candidates.remove(pair)
    return current


@dataclass(frozen=True)
class FactorInfo:
    """What the sweep measured of one factor."""

    name: str
    values: tuple[Any, ...]
    """Distinct values among the trials fitted."""

    in_model: bool
    note: str
    """Why it is (not) in the model: single value, confounded, …"""


def model_factors(names: Sequence[str], table: pd.DataFrame) -> tuple[str, ...]:
    """The factors a model uses for a sweep's factor ``names``: ``model`` (a label) enters
    through its parameter count ``model_params`` when the sweep recorded it; the built-ins
    come first in their order, any other factor after them."""
    out: list[str] = []
    has_params = "model_params" in table and table["model_params"].notna().any()
    for name in names:
        used = "model_params" if name == "model" and has_params else name
        if used not in out:
            out.append(used)
    builtin = [f for f in FACTORS if f in out]
    return tuple(builtin + [f for f in out if f not in FACTORS])


def base_formula(
    df: pd.DataFrame, factors: Sequence[str] | None = None
) -> tuple[Formula, tuple[FactorInfo, ...]]:
    """Main effects of every factor that varies and is not confounded with earlier ones.

    ``factors`` default to the built-in ones present in ``df``. A factor whose recorded
    values are all numbers is numeric (a per-unit cost), any other categorical
    (treatment-coded offsets; base level ``torch`` for ``framework`` when present, else
    the most common level)."""
    infos: list[FactorInfo] = []
    formula = Formula(forms=())
    names = [f for f in FACTORS if f in df] if factors is None else list(factors)
    for factor in names:
        column = df[factor] if factor in df else pd.Series(dtype=object)
        values = column.dropna().unique()
        shown = tuple(sorted(values.tolist(), key=str))
        if len(values) == 0:
            infos.append(
                FactorInfo(
                    factor, (), False, f"{factor} was not recorded for these trials: not fitted"
                )
            )
            continue
        if len(values) < 2:
            value = _show(shown[0])
            infos.append(
                FactorInfo(
                    factor,
                    shown,
                    False,
                    f"{factor} has a single value ({value}) in the trials fitted: nothing to fit; "
                    "its effect is part of the intercept",
                )
            )
            continue
        if column.notna().sum() < len(df):
            infos.append(
                FactorInfo(
                    factor,
                    shown,
                    False,
                    f"{factor} is recorded for only {int(column.notna().sum())} of {len(df)} "
                    "trials: not fitted",
                )
            )
            continue
        if is_numeric(column):
            numbers = pd.to_numeric(column).to_numpy(dtype=np.float64)
            scale = float(np.max(np.abs(numbers))) or 1.0
            candidate = replace(formula, forms=(*formula.forms, Form(factor, scale=scale)))
        else:
            counts = column.astype(str).value_counts()
            base = "torch" if "torch" in counts.index else str(counts.index[0])
            levels = (base, *sorted(set(counts.index) - {base}))
            candidate = replace(formula, levels=(*formula.levels, (factor, levels)))
        if _full_rank(candidate.design(df)):
            formula = candidate
            infos.append(FactorInfo(factor, shown, True, f"{factor}: {len(values)} values"))
        else:
            infos.append(
                FactorInfo(
                    factor,
                    shown,
                    False,
                    f"{factor} is confounded with {', '.join(formula.factors) or 'the intercept'} "
                    "in this design (it never varies alone): not fitted",
                )
            )
    return formula, tuple(infos)


def _without(formula: Formula, factor: str) -> Formula:
    return Formula(
        forms=tuple(f for f in formula.forms if f.factor != factor),
        levels=tuple((n, lv) for n, lv in formula.levels if n != factor),
        interactions=tuple(pair for pair in formula.interactions if factor not in pair),
    )


def _support(df: pd.DataFrame, factor: str) -> int:
    """Trials away from the factor's most common value: how many trials inform its term."""
    counts = df[factor].astype(str).value_counts()
    return int(len(df) - counts.iloc[0]) if len(counts) else 0


def fit_what_can_be(
    name: str, formula: Formula, df: pd.DataFrame, response: str
) -> tuple[Formula, tuple[str, ...]]:
    """Drop factors, one at a time, until the rest can be fitted with an interval.

    An interval needs at least one residual degree of freedom (more trials than terms).
    When there is none, the factor informed by the fewest trials (those away from its
    most common value; a tie goes to the factor listed later, so the built-ins stay
    longest) is left out and the others are fitted: one lost trial of a one-at-a-time
    design then costs one factor, not all of them. Returns the formula and one sentence
    per factor left out. :class:`ModelError` when not even the intercept can be fitted.
    """
    notes: list[str] = []
    what = response.split("__", maxsplit=1)[0]
    while not _identifiable(formula, df, min_df=1) and formula.factors:
        terms = formula.design(df).shape[1]
        order = {f: i for i, f in enumerate(formula.factors)}
        factor = min(formula.factors, key=lambda f: (_support(df, f), -order[f]))
        notes.append(
            f"{factor} not fitted in {name}: {len(df)} trial(s) with a measured {what} cannot "
            f"fit {terms} terms ({formula.describe()}) with an interval (that needs more "
            f"trials than terms); {factor} is varied in only {_support(df, factor)} of them, "
            "so it was left out and the other factors fitted (its effect, if any, widens "
            "their intervals). Add trials that vary it to fit it"
        )
        formula = _without(formula, factor)
    if not _identifiable(formula, df, min_df=1):
        raise ModelError(
            f"{name}: {len(df)} trial(s) with a measured {what} cannot fit even a mean "
            "with an interval (two are needed)"
        )
    return formula, tuple(notes)


def _show(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return f"{value:,.0f}"
    return str(value)


def reference_point(df: pd.DataFrame, formula: Formula) -> dict[str, Any]:
    """Where effects are evaluated: each numeric factor at its median measured value
    (the lower middle one), each categorical at its base level."""
    point: dict[str, Any] = {}
    numeric = [f for f in NUMERIC_FACTORS if f in df] + [
        f.factor for f in formula.forms if f.factor not in NUMERIC_FACTORS
    ]
    for factor in numeric:
        values = np.sort(pd.to_numeric(df[factor], errors="coerce").dropna().unique())
        if len(values):
            point[factor] = float(values[(len(values) - 1) // 2])
    categorical = [f for f in CATEGORICAL_FACTORS if f in df] + [
        n for n, _ in formula.levels if n not in CATEGORICAL_FACTORS
    ]
    for factor in categorical:
        levels = formula.factor_levels(factor)
        values = df[factor].dropna().astype(str)
        point[factor] = levels[0] if levels else (values.iloc[0] if len(values) else None)
    return point


def _contrast_effects(
    formula: Formula, result: Any, df: pd.DataFrame, confidence: float
) -> tuple[Effect, ...]:
    """Marginal costs (derivatives) and categorical offsets as linear contrasts with CIs.

    With ``framework`` in the model, every effect is given at each framework level (an
    interaction makes a per-unit cost differ between frameworks)."""
    ref = reference_point(df, formula)
    alpha = 1 - confidence
    effects = []
    framework_levels = formula.factor_levels("framework")
    levels = framework_levels or (ref.get("framework"),)
    for level in levels:
        at = {**ref, "framework": level} if framework_levels else dict(ref)
        for form in formula.forms:
            x = float(at[form.factor])
            h = max(abs(x) * 1e-4, 1e-3)
            lo = pd.DataFrame(
                [{**at, form.factor: max(x - h, 0.0) if form.kind != "linear" else x - h}]
            )
            hi = pd.DataFrame([{**at, form.factor: x + h}])
            step = float(hi[form.factor].iloc[0] - lo[form.factor].iloc[0])
            contrast = (formula.design(hi).to_numpy() - formula.design(lo).to_numpy()) / step
            effects.append(
                _effect(
                    effect_name(form.factor),
                    effect_unit(form.factor),
                    result,
                    contrast,
                    at=at,
                    alpha=alpha,
                )
            )
        for factor, factor_levels in formula.levels:
            if factor == "framework":
                if level == factor_levels[0]:
                    continue
                targets: tuple[str, ...] = (str(level),)
            elif level != levels[0]:
                continue
            else:
                targets = factor_levels[1:]
            for target in targets:
                point = {**at, factor: target}
                base = pd.DataFrame([{**point, factor: factor_levels[0]}])
                contrast = (
                    formula.design(pd.DataFrame([point])).to_numpy()
                    - formula.design(base).to_numpy()
                )
                effects.append(
                    _effect(
                        offset_name(factor, target),
                        f"bytes vs {factor_levels[0]}",
                        result,
                        contrast,
                        at=point,
                        alpha=alpha,
                    )
                )
    return tuple(effects)


def _effect(
    name: str,
    unit: str,
    result: Any,
    contrast: np.ndarray[Any, Any],
    *,
    at: dict[str, Any],
    alpha: float,
) -> Effect:
    test = result.t_test(contrast)
    value = float(np.asarray(test.effect).ravel()[0])
    low, high = (float(v) for v in np.asarray(test.conf_int(alpha=alpha)).ravel()[:2])
    return Effect(
        name, unit, Estimate(value, low, high), {k: v for k, v in at.items() if v is not None}
    )


def _negative_costs(
    formula: Formula, result: Any, df: pd.DataFrame, confidence: float
) -> list[tuple[Form, Effect]]:
    """Numeric main effects (not in an interaction) whose fitted cost is negative while
    their interval still reaches 0: candidates to fix at 0, most negative t first."""
    out = []
    in_pairs = {f for pair in formula.interactions for f in pair}
    effects = {e.name: e for e in _contrast_effects(formula, result, df, confidence)}
    for form in formula.forms:
        if form.factor in in_pairs:
            continue
        effect = effects.get(effect_name(form.factor))
        if effect is None:
            continue
        estimate = effect.estimate
        if estimate.value < 0 <= estimate.high:
            t = float(result.tvalues[form.column])
            out.append((t, form, effect))
    return [(form, effect) for _, form, effect in sorted(out, key=lambda item: item[0])]


def fit_quantity(
    name: str,
    df: pd.DataFrame,
    response: str,
    confidence: float = 0.95,
    formula: Formula | None = None,
    *,
    factors: Sequence[str] | None = None,
    constrain: bool = False,
) -> FittedModel:
    """Fit ``response`` (a column of ``df``) on the factors; choose the formula unless given.

    ``factors`` (default: the built-in ones) are the candidates when the formula is chosen.
    A chosen formula drops what cannot be fitted (:func:`fit_what_can_be`, said in
    ``FittedModel.dropped``) and is then **constrained**: memory does not fall when a
    numeric factor grows, so a per-unit cost whose fit is negative but whose interval
    reaches 0 is fixed at 0 (the term is left out and the rest refitted, as non-negative
    least squares' active set does); the unconstrained estimate stays in
    ``FittedModel.zero_effects``. A cost whose whole interval is negative is kept: the
    data then say memory falls. ``constrain=True`` applies the same to a given formula.
    With a given formula and ``constrain=False`` this is plain OLS (the claims' own fits).
    """
    data = df.dropna(subset=[response, *(formula.factors if formula else ())])
    y = data[response].to_numpy(dtype=np.float64)
    choices: tuple[FormChoice, ...] = ()
    dropped: tuple[str, ...] = ()
    if formula is None:
        formula, _ = base_formula(data, factors)
        formula, dropped = fit_what_can_be(name, formula, data, response)
        formula, choices = choose_forms(formula, data, y)
        formula = choose_interactions(formula, data, y)
        constrain = True
    elif not _identifiable(formula, data, min_df=1):
        if not constrain:
            raise ModelError(f"{name}: too few trials ({len(data)}) for {formula.describe()}")
        formula, dropped = fit_what_can_be(name, formula, data, response)
    result = _ols(formula, data, y)
    zero: list[Effect] = []
    while constrain:
        negative = _negative_costs(formula, result, data, confidence)
        if not negative:
            break
        form, effect = negative[0]
        zero.append(effect)
        formula = _without(formula, form.factor)
        result = _ols(formula, data, y)
    alpha = 1 - confidence
    ci = np.asarray(result.conf_int(alpha=alpha))
    units = formula.unit_factors()
    coefficients = tuple(
        Coefficient(
            term=str(term),
            estimate=Estimate(
                float(result.params.iloc[i]), float(ci[i, 0]), float(ci[i, 1])
            ).scaled(units[str(term)]),
            std_err=float(result.bse.iloc[i]) * units[str(term)],
            p_value=float(result.pvalues.iloc[i]),
        )
        for i, term in enumerate(result.params.index)
    )
    loo = _loo_rmse(formula, data, y)
    mean_y = float(np.mean(y))
    numeric = [f for f in NUMERIC_FACTORS if f in data] + [
        f.factor for f in formula.forms if f.factor not in NUMERIC_FACTORS
    ]
    ranges = {
        f: (float(pd.to_numeric(data[f]).min()), float(pd.to_numeric(data[f]).max()))
        for f in numeric
    }
    return FittedModel(
        name=name,
        formula=formula,
        n_trials=len(data),
        coefficients=coefficients,
        r2=float(result.rsquared),
        adj_r2=float(result.rsquared_adj),
        aic=float(result.aic),
        loo_rmse_bytes=loo,
        loo_rel_error=loo / mean_y if mean_y else math.nan,
        resid_sd_bytes=float(math.sqrt(result.scale)),
        effects=_contrast_effects(formula, result, data, confidence),
        form_choices=choices,
        ranges=ranges,
        trial_ids=tuple(str(t) for t in data.index),
        confidence=confidence,
        result=result,
        dropped=dropped,
        zero_effects=tuple(zero),
    )


@dataclass(frozen=True, eq=False)
class ModelSet:
    """Every fitted quantity of a sweep."""

    factors: tuple[FactorInfo, ...]
    models: Mapping[str, FittedModel]
    """``plateau``, ``peak`` (trial totals) and ``plateau[role]``, ``peak[role]``."""

    roles: tuple[str, ...]
    """Roles with their own models (fitted on the total's terms, each constrained)."""

    errors: tuple[str, ...]
    """Quantities, or factors of a quantity, that could not be fitted, and why."""

    within_trial_bytes_per_transition: Estimate | None
    """Mean of the per-trial fill slopes (a check on the capacity coefficient)."""

    analytic_bytes_per_transition: float | None
    """2 × observation bytes + 24 (action, reward, flags): what storing obs and next obs
    costs at least."""

    buffer_bytes_per_transition: Estimate | None = None
    """Mean of the per-trial buffer costs: the fill slope once warm-up is over, net of
    the growth that goes on without the buffer (:mod:`~memsweep.analyze.phases`)."""

    buffer_notes: tuple[str, ...] = ()
    """Why the buffer's cost could not be told from warm-up, per trial that could not."""

    def get(self, name: str) -> FittedModel | None:
        return self.models.get(name)


def _mean_estimate(values: pd.Series, confidence: float) -> Estimate | None:
    if len(values) < 2:
        return None
    result = sm.OLS(values.to_numpy(), np.ones(len(values))).fit()
    low, high = np.asarray(result.conf_int(alpha=1 - confidence))[0]
    return Estimate(float(result.params[0]), float(low), float(high))


def fit_all(
    table: pd.DataFrame,
    roles: Sequence[str],
    confidence: float = 0.95,
    factors: Sequence[str] | None = None,
) -> ModelSet:
    """Fit plateau and peak for the total, then per role on the total's terms.

    ``factors`` are the sweep's factors (default: the built-in ones); ``model`` stands for
    its parameter count (:func:`model_factors`)."""
    models: dict[str, FittedModel] = {}
    errors: list[str] = []
    names = model_factors(factors if factors is not None else FACTORS, table)
    names = tuple(n for n in names if n in table)
    measured = table.dropna(subset=["plateau__total"])
    _, infos = base_formula(measured if len(measured) else table, names)
    if measured.empty:
        infos = tuple(
            replace(
                f, in_model=False, note=f"{f.name}: no trial reached its plateau: nothing to fit"
            )
            for f in infos
        )
        errors.append(
            "no trial reached its plateau (a full buffer), so there is nothing to fit across "
            "trials; each trial's plateau is extrapolated from its fill (see Trials)"
        )
    for quantity in ("plateau", "peak") if len(measured) else ():
        try:
            total = fit_quantity(quantity, table, f"{quantity}__total", confidence, factors=names)
        except ModelError as exc:
            errors.append(str(exc))
            continue
        models[quantity] = total
        errors += total.dropped
        if quantity == "plateau":
            left_out = {n for n in names if n not in total.formula.factors}
            infos = tuple(
                replace(f, in_model=False, note=_dropped_note(total, f.name))
                if f.in_model and f.name in left_out
                else f
                for f in infos
            )
        fitted_rows = table.loc[list(total.trial_ids)]
        for role in roles:
            column = f"{quantity}__{role}"
            if column not in fitted_rows:
                continue
            role_df = fitted_rows.assign(**{column: fitted_rows[column].fillna(0.0)})
            try:
                models[f"{quantity}[{role}]"] = fit_quantity(
                    f"{quantity}[{role}]",
                    role_df,
                    column,
                    confidence,
                    formula=total.formula,
                    constrain=True,
                )
            except ModelError as exc:
                errors.append(str(exc))
    slopes = (
        table["fill_bpt__total"].dropna() if "fill_bpt__total" in table else pd.Series(dtype=float)
    )
    within = _mean_estimate(slopes, confidence)
    buffer = (
        table["buffer_bpt__total"].dropna()
        if "buffer_bpt__total" in table
        else pd.Series(dtype=float)
    )
    obs = table["obs_bytes"].dropna() if "obs_bytes" in table else pd.Series(dtype=float)
    analytic = float(2 * obs.median() + 24) if len(obs) else None
    return ModelSet(
        factors=infos,
        models=models,
        roles=tuple(roles),
        errors=tuple(dict.fromkeys(errors)),
        within_trial_bytes_per_transition=within,
        analytic_bytes_per_transition=analytic,
        buffer_bytes_per_transition=_mean_estimate(buffer, confidence),
    )


def _dropped_note(model: FittedModel, factor: str) -> str:
    return next(
        (note for note in model.dropped if note.startswith(f"{factor} not fitted")),
        f"{factor}: left out of the {model.name} model",
    )

"""Which terms a memory model has: the factors a sweep can fit, their forms and interactions.

**Form choice (stated criterion).** For each numeric factor with at least four distinct
values (:data:`CURVE_MIN_LEVELS`), the forms ``linear`` (x), ``log`` (log x, or
log(1 + x) when x can be 0) and ``power`` (x^p, p profiled over 0.1, 0.2, …, 3) are
compared by leave-one-out cross-validated RMSE in bytes, the other factors linear. The lowest wins, except that ``linear`` is kept
unless another form lowers the LOO RMSE by more than 5 % (bytes add up; a linear slope is
a cost per unit). A power profiled to p = 1 is the linear form, listed once (as linear).
A factor with two or three values is linear; one with one value is not fitted (and said
so).

**Interactions.** Added forward, one at a time, while the best addition lowers AIC by
more than 2, and only where the design allows: the design matrix keeps full rank and at
least two residual degrees of freedom.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import scipy.linalg
import statsmodels.api as sm
from statsmodels.stats.outliers_influence import OLSInfluence

from memsweep.analyze.formula import (
    CANDIDATE_INTERACTIONS,
    FACTORS,
    LINEAR_PREFERENCE,
    POWER_GRID,
    Form,
    Formula,
    ModelError,
    factor_arrays,
    is_numeric,
)
from memsweep.units import natural_order


@dataclass(frozen=True)
class FormChoice:
    """One candidate form of one factor and its cross-validated error."""

    factor: str
    form: str
    loo_rmse_bytes: float
    aic: float
    chosen: bool


def _full_rank(exog: pd.DataFrame) -> bool:
    scaled = exog / exog.abs().max().replace(0.0, 1.0)
    return bool(np.linalg.matrix_rank(scaled.to_numpy()) == exog.shape[1])


def identifiable(formula: Formula, df: pd.DataFrame, min_df: int = 1) -> bool:
    exog = formula.design(df)
    return len(df) - exog.shape[1] >= min_df and _full_rank(exog)


def ols(formula: Formula, df: pd.DataFrame, y: np.ndarray[Any, Any]) -> Any:
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


def loo_rmse(formula: Formula, df: pd.DataFrame, y: np.ndarray[Any, Any]) -> float:
    """Leave-one-out RMSE; exact PRESS residuals, or refits when a power is profiled."""
    power = [f for f in formula.forms if f.kind == "power"]
    if not power:
        influence = OLSInfluence(ols(formula, df, y))
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


CURVE_MIN_LEVELS = 4
"""Distinct values a factor needs before a curve (log, x^p) is a candidate. Through three
levels a line and a curve differ by one residual, and x^p (its exponent a parameter too)
passes through all three: a new user's 3-level batch sweep (peaks 877, 925, 958 MB at
500, 2,000, 4,000) picked x^0.3 by leave-one-out error, and its prediction at 64,000 —
16× beyond the data — was a curve flattened by one point. A line is the law of buffers
and batches, and the larger of the two beyond the data: with three levels it is kept."""


def _forms_for(factor: str, values: np.ndarray[Any, Any]) -> list[Form]:
    forms = [Form(factor, "linear")]
    if len(np.unique(values)) >= CURVE_MIN_LEVELS:
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
            if not identifiable(trial, df):
                continue
            result = ols(trial, df, y)
            extra = 1 if candidate.kind == "power" else 0
            aic = float(result.aic + 2 * extra)
            used = trial.form(form.factor)
            assert used is not None
            rows.append((used, loo_rmse(trial, df, y), aic))
        if not rows:
            continue
        linear = rows[0]
        # A power profiled to p = 1 is the linear form in-sample (its LOO, refitted per
        # fold, is not a different form's): the best is taken among the others.
        curved = [r for r in rows[1:] if not (r[0].kind == "power" and r[0].power == 1.0)]
        best = min(curved, key=lambda r: r[1] if math.isfinite(r[1]) else math.inf, default=linear)
        # An error at rounding level cannot be beaten.
        negligible = linear[1] <= 1e-9 * float(np.mean(np.abs(y)))
        better = best[1] < linear[1] * (1 - LINEAR_PREFERENCE)
        pick = best if better and not negligible else linear
        chosen = _with_form(chosen, pick[0])
        # A power profiled to p = 1 is the linear form in-sample: one row, the linear one.
        choices += [
            FormChoice(form.factor, f.column, rmse, aic, f == pick[0])
            for f, rmse, aic in rows
            if not (f.kind == "power" and f.power == 1.0)
        ]
    return chosen, tuple(choices)


def choose_interactions(formula: Formula, df: pd.DataFrame, y: np.ndarray[Any, Any]) -> Formula:
    """Forward selection of candidate interactions by AIC (ΔAIC < −2), where identifiable."""
    current = formula
    current_aic = float(ols(current, df, y).aic)
    present = set(current.factors)
    candidates = [c for c in CANDIDATE_INTERACTIONS if c[0] in present and c[1] in present]
    while candidates:
        scored = []
        for pair in candidates:
            trial = replace(current, interactions=(*current.interactions, pair))
            if identifiable(trial, df, min_df=2):
                scored.append((float(ols(trial, df, y).aic), pair, trial))
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
        shown = tuple(natural_order(values.tolist()))
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


def without(formula: Formula, factor: str) -> Formula:
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
    while not identifiable(formula, df, min_df=1) and formula.factors:
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
        formula = without(formula, factor)
    if not identifiable(formula, df, min_df=1):
        raise ModelError(
            f"{name}: {len(df)} trial(s) with a measured {what} cannot fit even a mean "
            "with an interval (two are needed)"
        )
    return formula, tuple(notes)


def _show(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return f"{value:,.0f}"
    return str(value)

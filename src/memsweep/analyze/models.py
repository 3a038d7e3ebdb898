"""How trial-level memory depends on the factors: the OLS fits and the effects they give.

**The model.** For a trial-level quantity ``Q`` (plateau or peak memory, bytes)::

    Q = β0 + f_cap(replay_capacity) + f_par(model_params) + f_w(num_workers)
          + framework offsets + selected interactions + ε

Numeric factors enter linearly unless the data prefer another form; ``framework`` is a
treatment-coded offset (base: ``torch`` when present). Candidate interactions are the
ones memory physics suggests: ``num_workers × model_params`` (each env runner holds a
copy of the model), ``framework × num_workers``, ``framework × model_params`` and
``framework × replay_capacity`` (another framework, another per-unit cost), so a
framework is an offset plus slopes, not a separate universe.

Intervals are OLS (Student-t) at the analysis' confidence; prediction intervals are
for a new trial.

Length (~520 lines): the fit of one quantity, its derived effects (contrasts with
intervals, non-negative costs) and the set of fits are one unit; the choice of terms is
already in :mod:`memsweep.analyze.terms` and the design matrix in
:mod:`memsweep.analyze.formula`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats
import statsmodels.api as sm

from memsweep.analyze.formula import (
    CATEGORICAL_FACTORS,
    FACTORS,
    NUMERIC_FACTORS,
    Form,
    Formula,
    ModelError,
    effect_name,
    effect_unit,
    offset_name,
)
from memsweep.analyze.terms import (
    FactorInfo,
    FormChoice,
    base_formula,
    choose_forms,
    choose_interactions,
    fit_what_can_be,
    identifiable,
    loo_rmse,
    model_factors,
    ols,
    without,
)
from memsweep.units import Estimate


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

    run_to_run_cv: float = 0.0
    """Run-to-run noise of the quantity, relative to its level (SD ÷ mean): a new trial's
    prediction interval is never narrower than this noise (:func:`run_to_run_cv`)."""

    def predict(self, points: pd.DataFrame) -> pd.DataFrame:
        """Mean and intervals at ``points`` (one row per point, factor columns):
        ``mean``, ``mean_ci_lower/upper`` and ``obs_ci_lower/upper`` (a new trial).

        A new trial's interval is ``mean ± t · √(se_mean² + σ²)``, t with the fit's
        residual degrees of freedom, where σ is the larger of the fit's residual SD and the
        run-to-run noise at that level (``run_to_run_cv × mean``): with 1–3 residual
        degrees of freedom a fit can pass almost exactly through its trials, and its
        residual SD then promises a new trial far less spread than reruns of one
        configuration show."""
        exog = self.formula.design(points)
        frame = self.result.get_prediction(exog).summary_frame(alpha=1 - self.confidence)
        frame.index = points.index
        if self.run_to_run_cv > 0:
            df = max(float(self.result.df_resid), 1.0)
            t = float(scipy.stats.t.ppf(1 - (1 - self.confidence) / 2, df))
            noise = np.maximum(
                float(self.result.scale), np.square(self.run_to_run_cv * frame["mean"].abs())
            )
            half = t * np.sqrt(np.square(frame["mean_se"]) + noise)
            frame["obs_ci_lower"] = frame["mean"] - half
            frame["obs_ci_upper"] = frame["mean"] + half
        return frame

    def coefficient(self, term: str) -> Coefficient:
        return next(c for c in self.coefficients if c.term == term)

    def effect(self, name: str) -> Effect | None:
        return next((e for e in self.effects if e.name == name), None)


def reference_point(df: pd.DataFrame, formula: Formula) -> dict[str, float | str]:
    """Where effects are evaluated: each numeric factor at its median measured value
    (the lower middle one), each categorical at its base level."""
    point: dict[str, float | str] = {}
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
        if levels or len(values):
            point[factor] = levels[0] if levels else str(values.iloc[0])
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
            value = at[form.factor]
            assert isinstance(value, float)  # a numeric form's reference is its median
            x = value
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
    elif not identifiable(formula, data, min_df=1):
        if not constrain:
            raise ModelError(f"{name}: too few trials ({len(data)}) for {formula.describe()}")
        formula, dropped = fit_what_can_be(name, formula, data, response)
    result = ols(formula, data, y)
    zero: list[Effect] = []
    while constrain:
        negative = _negative_costs(formula, result, data, confidence)
        if not negative:
            break
        form, effect = negative[0]
        zero.append(effect)
        formula = without(formula, form.factor)
        result = ols(formula, data, y)
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
    loo = loo_rmse(formula, data, y)
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
        run_to_run_cv=run_to_run_cv(data, formula, response),
    )


DEFAULT_RUN_TO_RUN_CV = 0.004
"""Run-to-run noise of a trial's plateau and peak, SD ÷ mean, when a sweep replicates no
configuration: measured on the committed reference run (``results/reference-default``),
whose base point ran three times: plateau SD 2.3 MB at 621 MB (0.37 %), peak 1.4 MB at
625 MB (0.22 %), rounded up."""


def run_to_run_cv(data: pd.DataFrame, formula: Formula, response: str) -> float:
    """Relative run-to-run noise of ``response``: the pooled SD of trials that share every
    factor of ``formula`` (replicates: the model cannot tell them apart, their spread is
    pure error) over their mean, and at least :data:`DEFAULT_RUN_TO_RUN_CV`. Trials whose
    figure is 0 (a role they do not have) are left out."""
    present = data[data[response] > 0]
    factors = [f for f in formula.factors if f in present]
    if not factors or len(present) < 2:
        return DEFAULT_RUN_TO_RUN_CV
    groups = present.groupby([present[f].astype(str) for f in factors], dropna=False)[response]
    squares = 0.0
    dof = 0
    for _, values in groups:
        if len(values) >= 2:
            relative = values.to_numpy(dtype=np.float64) / float(values.mean())
            squares += float(np.sum(np.square(relative - 1.0)))
            dof += len(values) - 1
    # A sweep's own estimate rests on a few degrees of freedom and can come out near 0 by
    # chance (two reruns that happen to agree): it can widen the floor, not lower it.
    measured = math.sqrt(squares / dof) if dof else 0.0
    return max(measured, DEFAULT_RUN_TO_RUN_CV)


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
            "no trial reached a measured plateau, so there is nothing to fit across trials: "
            "each trial's reason (a buffer not yet full, or too few samples after set-up) is "
            "in the report's Trials notes; run the trials longer (stop.plateau_env_steps)"
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

"""How well the factor models predict trials they did not see: leave-one-out and held out.

Two schemes, both refitting the analysis' own models (:func:`~memsweep.analyze.models.fit_all`,
forms, interactions and constraints chosen anew) on a subset of the trials and predicting
the rest through :func:`~memsweep.analyze.prediction.predict_roles`, the code path
``memsweep analyze predict`` prints:

- **leave-one-out**: each trial that reached its plateau is predicted by the models fitted
  on all the others;
- **held out (extrapolation)**: for each numeric factor with at least three measured
  values, the trials at its largest value are predicted by the models fitted on the
  trials below it, as a user predicts a bigger run than the sweep measured.

Per prediction, per role and in total, for plateau and peak: the relative error
``(predicted − measured) ÷ measured`` and whether the measured value lies above the
interval's upper bound (an **under-prediction**: the case that runs a node out of
memory). A trial whose factor value the fitted subset cannot reach (it was alone at that
value, as in a one-at-a-time design) is counted as not predicted, with why.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from memsweep.analyze.analysis import Analysis
from memsweep.analyze.models import ModelSet, fit_all
from memsweep.analyze.prediction import predict_roles
from memsweep.units import Estimate

QUANTITIES = ("plateau", "peak")


@dataclass(frozen=True)
class AccuracyCase:
    """One trial's measured figure against the prediction of models that did not see it."""

    sweep: str
    trial_id: str
    scheme: str
    """``leave-one-out`` or ``held out``."""

    quantity: str
    """``plateau`` or ``peak``."""

    role: str
    """A role or ``total``."""

    measured_bytes: float
    predicted: Estimate
    """Prediction with its interval for a new trial, bytes."""

    @property
    def rel_error(self) -> float:
        return (self.predicted.value - self.measured_bytes) / self.measured_bytes

    @property
    def under(self) -> bool:
        """The measured figure lies above the interval's upper bound."""
        return self.measured_bytes > self.predicted.high


@dataclass(frozen=True)
class Unpredicted:
    """A trial a scheme could not predict, and why."""

    sweep: str
    trial_id: str
    scheme: str
    reason: str


def _refit(analysis: Analysis, table: pd.DataFrame) -> ModelSet:
    return fit_all(
        table, analysis.models.roles, analysis.options.confidence, analysis.data.factor_names
    )


def _reachable(models: ModelSet, train: pd.DataFrame, trial: pd.Series) -> str | None:
    """Why the models fitted on ``train`` cannot predict ``trial`` (None: they can)."""
    model = models.get("plateau")
    if model is None:
        return "; ".join(models.errors) or "no plateau model"
    for info in models.factors:
        name = info.name
        if name in model.formula.factors or name not in trial.index:
            continue
        value = trial[name]
        seen = train[name].dropna().unique()
        if value is not None and len(seen) and not any(str(value) == str(v) for v in seen):
            return f"its {name} ({value}) is not in the trials fitted, which do not fit {name}"
    return None


def _cases(
    analysis: Analysis, train: pd.DataFrame, test: pd.DataFrame, scheme: str
) -> tuple[list[AccuracyCase], list[Unpredicted]]:
    models = _refit(analysis, train)
    cases: list[AccuracyCase] = []
    missed: list[Unpredicted] = []
    for trial_id, trial in test.iterrows():
        why = _reachable(models, train, trial)
        if why is not None:
            missed.append(Unpredicted(analysis.name, str(trial_id), scheme, why))
            continue
        (roles,) = predict_roles(models, test.loc[[trial_id]])
        for prediction in roles:
            for quantity in QUANTITIES:
                measured = trial.get(f"{quantity}__{prediction.role}")
                estimate = prediction.plateau if quantity == "plateau" else prediction.peak
                if estimate is None or measured is None or not np.isfinite(measured):
                    continue
                if measured <= 0:
                    continue
                cases.append(
                    AccuracyCase(
                        analysis.name,
                        str(trial_id),
                        scheme,
                        quantity,
                        prediction.role,
                        float(measured),
                        estimate,
                    )
                )
    return cases, missed


def leave_one_out(analysis: Analysis) -> tuple[list[AccuracyCase], list[Unpredicted]]:
    """Each trial with a plateau predicted by the models fitted on the others."""
    table = analysis.trial_table.dropna(subset=["plateau__total"])
    cases: list[AccuracyCase] = []
    missed: list[Unpredicted] = []
    for trial_id in table.index:
        train = table.drop(index=trial_id)
        if len(train) < 2:
            missed.append(Unpredicted(analysis.name, str(trial_id), "leave-one-out", "alone"))
            continue
        found, lost = _cases(analysis, train, table.loc[[trial_id]], "leave-one-out")
        cases += found
        missed += lost
    return cases, missed


def held_out(analysis: Analysis) -> tuple[list[AccuracyCase], list[Unpredicted]]:
    """Per numeric factor with ≥ 3 values: the trials at its largest value predicted by
    the models fitted on the trials below it."""
    table = analysis.trial_table.dropna(subset=["plateau__total"])
    model = analysis.models.get("plateau")
    cases: list[AccuracyCase] = []
    missed: list[Unpredicted] = []
    if model is None:
        return cases, missed
    for form in model.formula.forms:
        values = pd.to_numeric(table[form.factor], errors="coerce")
        if values.nunique() < 3:
            continue
        top = values == values.max()
        train, test = table[~top], table[top]
        if len(train) < 2:
            continue
        found, lost = _cases(analysis, train, test, f"held out ({form.factor})")
        cases += found
        missed += lost
    return cases, missed


@dataclass(frozen=True)
class AccuracySummary:
    """Figures over a set of cases."""

    cases: int
    median_abs_rel_error: float
    """Median of |predicted − measured| ÷ measured; NaN without cases."""

    under_rate: float
    """Share of cases whose measured figure lies above the interval's upper bound."""

    coverage: float
    """Share of cases whose measured figure lies inside the interval."""


def summarise(cases: Sequence[AccuracyCase]) -> AccuracySummary:
    if not cases:
        return AccuracySummary(0, math.nan, math.nan, math.nan)
    errors = np.abs([c.rel_error for c in cases])
    return AccuracySummary(
        len(cases),
        float(np.median(errors)),
        float(np.mean([c.under for c in cases])),
        float(np.mean([c.predicted.contains(c.measured_bytes) for c in cases])),
    )

"""Analysis of a sweep's Parquet: phases, factor models, predictions, growth verdicts, report.

Data path: :mod:`~memsweep.analyze.load` (duckdb aggregation) →
:mod:`~memsweep.analyze.phases` (per trial) → :mod:`~memsweep.analyze.leaks` (growth
verdicts, :mod:`~memsweep.analyze.growth`'s rule) →
:mod:`~memsweep.analyze.models` (per factor) → :mod:`~memsweep.analyze.prediction` and
the report, :mod:`memsweep.report`, reads what these compute.

Typical use::

    analysis = analyze_results("results/default")
    predict(analysis, PredictPoint(replay_capacity=1_000_000, num_workers=8,
                                   model="512,512", framework="torch"))

The names below are loaded on first use, so that ``python -m memsweep.analyze`` answers
a bad flag or folder without first importing pandas, statsmodels, duckdb and matplotlib.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from memsweep.analyze.analysis import Analysis, AnalysisOptions, analyze_results
    from memsweep.analyze.growth import GrowthFit, GrowthRule, classify_growth
    from memsweep.analyze.leaks import GrowthVerdict, LeakVerdict
    from memsweep.analyze.models import Effect, FittedModel, ModelSet
    from memsweep.analyze.phases import RolePhases, TrialPhases
    from memsweep.analyze.prediction import Prediction, PredictPoint, RolePrediction, predict
    from memsweep.analyze.solve import BudgetAnswer, solve_budget
    from memsweep.units import Estimate

_HOMES = {
    "Analysis": "analysis",
    "AnalysisOptions": "analysis",
    "analyze_results": "analysis",
    "LeakVerdict": "leaks",
    "GrowthVerdict": "leaks",
    "GrowthFit": "growth",
    "GrowthRule": "growth",
    "classify_growth": "growth",
    "Effect": "models",
    "FittedModel": "models",
    "ModelSet": "models",
    "RolePhases": "phases",
    "TrialPhases": "phases",
    "BudgetAnswer": "solve",
    "Prediction": "prediction",
    "PredictPoint": "prediction",
    "RolePrediction": "prediction",
    "predict": "prediction",
    "solve_budget": "solve",
    "Estimate": "units",
}

__all__ = [
    "Analysis",
    "AnalysisOptions",
    "BudgetAnswer",
    "Effect",
    "Estimate",
    "FittedModel",
    "GrowthFit",
    "GrowthRule",
    "GrowthVerdict",
    "LeakVerdict",
    "ModelSet",
    "PredictPoint",
    "Prediction",
    "RolePhases",
    "RolePrediction",
    "TrialPhases",
    "analyze_results",
    "classify_growth",
    "predict",
    "solve_budget",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"memsweep.analyze.{_HOMES[name]}"), name)
    globals()[name] = value
    return value

"""The inverse of a prediction: the largest value of one factor whose predicted node memory
fits a budget (``predict --budget … --solve-for …``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import pandas as pd

from memsweep.analyze.prediction import (
    Prediction,
    PredictPoint,
    predict,
    predict_roles,
    require_models,
    resolve_point,
)
from memsweep.errors import UsageError
from memsweep.units import Estimate

if TYPE_CHECKING:
    from memsweep.analyze.analysis import Analysis


@dataclass(frozen=True)
class BudgetAnswer:
    """The largest value of one factor whose predicted node memory fits a budget."""

    factor: str
    """``replay_capacity``, ``num_workers`` or any other numeric factor of the sweep."""

    budget_bytes: int
    largest_safe: int | None
    """Largest value whose upper prediction bound (peak + Ray system + driver) fits; None
    if none."""

    largest_expected: int | None
    """Largest value whose predicted peak (+ Ray system + driver) fits."""

    prediction: Prediction | None
    """The prediction at ``largest_safe`` (or ``largest_expected`` when nothing is safe)."""

    searched_up_to: int
    """Upper end of the search; an answer equal to it means "at least this much"."""


def largest_fitting(fits: Callable[[int], bool], low: int, high: int) -> int | None:
    """Largest integer n in [low, high] with ``fits(n)``, for ``fits`` true then false."""
    if not fits(low):
        return None
    if fits(high):
        return high
    while high - low > 1:
        middle = (low + high) // 2
        if fits(middle):
            low = middle
        else:
            high = middle
    return low


def _with_value(point: PredictPoint, factor: str, value: int) -> PredictPoint:
    if factor == "replay_capacity":
        return replace(point, replay_capacity=value)
    if factor == "num_workers":
        return replace(point, num_workers=value)
    kept = tuple((n, v) for n, v in point.settings if n != factor)
    return replace(point, settings=(*kept, (factor, float(value))))


def solve_budget(
    analysis: Analysis,
    point: PredictPoint,
    budget_bytes: int,
    factor: str = "replay_capacity",
) -> BudgetAnswer:
    """The largest ``factor`` (any numeric factor of the sweep) whose predicted peak
    (+ Ray system + the Tune driver) fits ``budget_bytes``. The peak is the coherent one ``predict`` prints
    (never below the plateau, never negative)."""
    require_models(analysis)
    info = next((f for f in analysis.models.factors if f.name == factor), None)
    if info is None or not info.in_model:
        note = info.note if info else f"{factor} was not measured"
        raise UsageError(f"--budget: cannot solve for {factor}: {note}")
    if not all(isinstance(v, int | float) for v in info.values):
        raise UsageError(f"--budget: cannot solve for {factor}: it is a label, not a number")
    fixed = _with_value(point, factor, 0)
    resolved, _, _ = resolve_point(analysis, fixed)
    # What the node needs besides the trial: Ray's own processes and the Tune driver
    # (memsweep's samplers are not included: they run only while memsweep measures).
    system = analysis.system_bytes_per_node + analysis.driver_bytes
    high = 10**12 if factor == "replay_capacity" else 1024 if factor == "num_workers" else 10**9

    def peak_at(value: int) -> Estimate:
        (roles,) = predict_roles(analysis.models, pd.DataFrame([{**resolved, factor: value}]))
        total = roles[-1]
        return total.peak or total.plateau

    def safe(value: int) -> bool:
        return peak_at(value).high + system <= budget_bytes

    def expected(value: int) -> bool:
        return peak_at(value).value + system <= budget_bytes

    largest_safe = largest_fitting(safe, 0, high)
    largest_expected = largest_fitting(expected, 0, high)
    chosen = largest_safe if largest_safe is not None else largest_expected
    prediction = (
        predict(analysis, _with_value(point, factor, chosen)) if chosen is not None else None
    )
    return BudgetAnswer(factor, budget_bytes, largest_safe, largest_expected, prediction, high)

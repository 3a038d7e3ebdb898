"""How a claim's number is fitted and judged: the claim's own OLS terms, a contrast with
its interval, and the verdict rules.

Verdicts are rules, stated here so that a reader can disagree with them:

- a claim with a figure ("about 8 GB") is **supported** when the figure lies within
  ±25 % of the extrapolated interval ("about"), **not supported** otherwise (the table
  says by how many times it is off), and **depends on X** when variants of X disagree;
- a claim of direction ("eager uses more") is **supported** when the whole interval of
  the difference lies on the claimed side and the difference is more than 1 % of the
  process's memory (a real effect, not a rounding), **not supported** when the interval
  lies on the other side or inside that ±1 % band, and **inconclusive** otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from memsweep.analyze.formula import Form, Formula, ModelError
from memsweep.analyze.models import FittedModel, fit_quantity
from memsweep.claims.table import (
    ABOUT,
    NEGLIGIBLE,
    PLATEAU,
    SweepFacts,
)
from memsweep.errors import DataError
from memsweep.units import Estimate, format_bytes, format_number


def fit(sweep: SweepFacts, formula: Formula) -> FittedModel:
    """OLS of the trials' plateau on ``formula`` (the claim's own terms)."""
    table = sweep.analysis.trial_table
    try:
        return fit_quantity("plateau", table, PLATEAU, sweep.analysis.options.confidence, formula)
    except ModelError as exc:
        raise DataError(f"{sweep.name}: {exc}") from None


def contrast(
    model: FittedModel,
    plus: Sequence[Mapping[str, Any]],
    minus: Sequence[Mapping[str, Any]] = (),
    per: float = 1.0,
) -> Estimate:
    """(Σ predictions at ``plus`` − Σ at ``minus``) ÷ ``per``, with its confidence interval.

    A difference of fitted means is a linear combination of the coefficients, so its
    interval is exact under the OLS model (statsmodels' ``t_test``).
    """

    def design(points: Sequence[Mapping[str, Any]]) -> Any:
        if not points:
            return 0.0
        return model.formula.design(pd.DataFrame(list(points))).to_numpy().sum(axis=0)

    vector = (design(plus) - design(minus)) / per
    test = model.result.t_test(np.atleast_2d(vector))
    value = float(np.asarray(test.effect).ravel()[0])
    alpha = 1 - model.confidence
    low, high = (float(v) for v in np.asarray(test.conf_int(alpha=alpha)).ravel()[:2])
    return Estimate(value, low, high)


def linear(factor: str, table: pd.DataFrame) -> Form:
    """``factor`` as a linear term, scaled by its largest value (well-conditioned)."""
    return Form(factor, scale=float(table[factor].abs().max()) or 1.0)


def span_text(estimate: Estimate) -> str:
    """``low – high`` in bytes."""
    return f"{format_bytes(estimate.low)} – {format_bytes(estimate.high)}"


def reach(value: float, measured_max: float, what: str) -> str:
    """ "N× beyond the largest X measured (M)" or "" inside the range."""
    if measured_max <= 0 or value <= measured_max:
        return ""
    return (
        f"{value / measured_max:.3g}× beyond the largest {what} measured "
        f"({format_number(measured_max)})"
    )


def typical_memory(sweep: SweepFacts) -> float:
    """The median plateau of the sweep's trials: the "1 %" of the direction rule."""
    return float(sweep.analysis.trial_table[PLATEAU].median())


# --- Verdict rules -----------------------------------------------------------------------


def figure_verdict(at_scale: Estimate, figure: float, what: str) -> tuple[str, str]:
    """Rule for a claim with a figure: is ``figure`` "about" inside ``at_scale``?"""
    low, high = at_scale.low * (1 - ABOUT), at_scale.high * (1 + ABOUT)
    if low <= figure <= high:
        return "supported", (
            f"{format_bytes(figure)} lies within ±{ABOUT:.0%} of the measured "
            f"{span_text(at_scale)} {what}"
        )
    ratio = at_scale.value / figure if figure else math.inf
    return "not supported", (
        f"measured {format_bytes(at_scale.value)} {what} is {ratio:.2g}× the claimed "
        f"{format_bytes(figure)} (interval {span_text(at_scale)})"
    )


def difference_side(difference: Estimate, band: float) -> str:
    """``above`` / ``below`` (the whole interval beyond ±``band``), ``none`` (inside it),
    or ``unclear`` (the interval reaches both no difference and a real one)."""
    if difference.low > band:
        return "above"
    if difference.high < -band:
        return "below"
    if -band <= difference.low and difference.high <= band:
        return "none"
    return "unclear"


def direction_verdict(
    difference: Estimate, sign: int, typical: float, what: str
) -> tuple[str, str]:
    """Rule for a claim of direction: ``sign`` +1 says "more", −1 says "less"."""
    side = difference_side(difference, NEGLIGIBLE * typical)
    shown = f"{format_bytes(difference.value, signed=True)} ({span_text(difference)})"
    claimed = "above" if sign > 0 else "below"
    if side == claimed:
        return "supported", f"{what}: {shown}, the whole interval on the claimed side"
    if side == "none":
        return "not supported", (
            f"{what}: {shown}, within ±{NEGLIGIBLE:.0%} of a process's "
            f"{format_bytes(typical)}: no real difference"
        )
    if side == "unclear":
        return "inconclusive", f"{what}: {shown}, the interval includes no real difference"
    return "not supported", f"{what}: {shown}, the whole interval on the other side"


# --- The claims ---------------------------------------------------------------------------

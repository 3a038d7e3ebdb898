"""The buffer's own bytes per transition: the fill's slope net of the warm-up growth that
happens at the same time (see :func:`buffer_cost`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from memsweep.analyze.trends import fit_trend
from memsweep.units import Estimate

MIN_HALF_BUCKETS = 4
"""Buckets each half of the fill needs before the buffer's cost is separated."""


def buffer_cost(
    y: np.ndarray[Any, Any],
    stored: np.ndarray[Any, Any],
    drift_per_1k_steps: Estimate | None,
    capacity: float,
    confidence: float,
    *,
    filled: bool = True,
) -> tuple[Estimate | None, str]:
    """The buffer's cost per transition, apart from warm-up growth at the same time.

    While a buffer fills, the trial also warms up (the learner starts, the allocator and
    the frameworks grow their pools), so the plain fill slope charges all of it to the
    buffer. The rule: (1) only the second half of the fill counts (stored transitions
    above half of those the fill reached): warm-up comes first; (2) the warm-up must be
    over there, tested by the slopes of that part's two halves agreeing (their intervals
    overlap; a slope still falling is still warm-up); (3) growth that goes on without the
    buffer is measured after it filled (the plateau's growth per env step; one env step
    stores one transition) and subtracted, with the intervals' ends combined the
    conservative way. Each step that cannot be done makes the answer None, and the note
    says why.
    """
    if capacity <= 0:
        return None, ""
    known = np.isfinite(y) & np.isfinite(stored)
    y, stored = y[known], stored[known]
    if len(y) < 2 * MIN_HALF_BUCKETS:
        return None, (
            f"cannot separate the buffer from warm-up: {len(y)} fill buckets, "
            f"{2 * MIN_HALF_BUCKETS} needed"
        )
    middle = float(stored.min() + stored.max()) / 2
    late = stored >= middle
    if late.sum() < MIN_HALF_BUCKETS:
        return None, "cannot separate the buffer from warm-up: too few buckets in the late fill"
    late_fit = fit_trend(y[late], {"stored": stored[late]}, confidence)
    if late_fit is None:
        return None, "cannot separate the buffer from warm-up: the late fill does not fit"
    slope = late_fit.coef("stored")
    order = np.argsort(stored[late])
    halves = np.array_split(order, 2)
    if min(len(h) for h in halves) >= 3:
        fits = [fit_trend(y[late][h], {"stored": stored[late][h]}, confidence) for h in halves]
        if all(f is not None for f in fits):
            first, second = (f.coef("stored") for f in fits if f is not None)
            if second.high < first.low:
                return None, (
                    "cannot separate the buffer from warm-up: memory growth per transition "
                    f"was still falling in the last quarter of the fill ({_per_transition(first.value)} "
                    f"→ {_per_transition(second.value)}): warm-up was not over when the buffer "
                    f"filled; {max(slope.value, 0.0):,.0f} B/transition is an upper bound. A "
                    "longer fill (a larger capacity) separates them"
                )
    if drift_per_1k_steps is None:
        why = (
            "the plateau is too short to measure"
            if filled
            else "the buffer never filled, so it left unmeasured"
        )
        return None, (
            f"cannot separate the buffer from warm-up: {why} the growth without the buffer; "
            f"the late fill gives {slope.value:,.0f} B/transition, an upper bound"
        )
    drift = drift_per_1k_steps.scaled(1e-3)
    buffer = Estimate(slope.value - drift.value, slope.low - drift.high, slope.high - drift.low)
    if drift.value >= 0:
        net = f"minus {drift.value:,.0f} B per env step of growth without the buffer"
    else:
        net = f"plus {-drift.value:,.0f} B per env step by which memory fell without the buffer"
    return buffer, f"late fill {slope.value:,.0f} B/transition {net} (after it filled)"


def _per_transition(rate: float) -> str:
    """A within-fill rate in words, never a negative byte figure: memory that fell says so."""
    if rate < 0:
        return f"memory falling {-rate:,.0f} B per transition"
    return f"{rate:,.0f} B/transition"

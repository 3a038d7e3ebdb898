"""Where a trial's fill and plateau lie in its memory series: the buffer's fill from the
Tune results, the plateau from the moment the buffer is full."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class PhaseOptions:
    """Thresholds of phase detection."""

    confidence: float = 0.95
    """Two-sided interval level of every fit."""

    full_fraction: float = 0.98
    """The buffer counts as full at this fraction of its capacity. RLlib's new-stack
    episode buffer evicts whole episodes, so a full buffer holds capacity minus up to one
    episode (measured: 39,856 of 40,000 with 200-step episodes), never exactly capacity."""

    settle_fraction: float = 0.1
    """Share of the plateau (and at least two buckets) skipped after the buffer fills,
    while the last allocations settle, before drift is measured."""

    min_fill_buckets: int = 5
    """Fewer fill buckets than this: no per-trial bytes-per-transition fit."""

    min_plateau_buckets: int = 3
    """Fewer plateau buckets than this: the plateau counts as not reached."""

    min_drift_buckets: int = 8
    """Fewer plateau buckets than this: the plateau level is a mean, drift is not measured."""


@dataclass(frozen=True)
class Segments:
    fill: np.ndarray[Any, np.dtype[np.bool_]]
    plateau: np.ndarray[Any, np.dtype[np.bool_]]
    plateau_start_s: float | None


def segment(
    t_s: np.ndarray[Any, Any],
    stored: np.ndarray[Any, Any],
    *,
    bucket_s: float,
    capacity: float,
    progress_t_s: np.ndarray[Any, Any],
    progress_stored: np.ndarray[Any, Any],
    options: PhaseOptions,
) -> Segments:
    """Which buckets are fill and which are plateau (a pure function of the time axis)."""
    t = np.asarray(t_s, dtype=np.float64)
    stored_arr = np.asarray(stored, dtype=np.float64)
    if len(progress_t_s) == 0:
        none = np.zeros(len(t), dtype=bool)
        return Segments(none, none.copy(), None)
    first_result = float(progress_t_s[0])
    if capacity <= 0:
        start: float | None = first_result
    else:
        full = np.flatnonzero(np.asarray(progress_stored) >= options.full_fraction * capacity)
        start = None
        if len(full):
            index = int(full[0])
            start = float(progress_t_s[index])
            if index > 0:
                # The buffer crossed the threshold between two results: interpolate.
                s0, s1 = float(progress_stored[index - 1]), float(progress_stored[index])
                t0, t1 = float(progress_t_s[index - 1]), float(progress_t_s[index])
                if s1 > s0:
                    frac = (options.full_fraction * capacity - s0) / (s1 - s0)
                    start = t0 + min(max(frac, 0.0), 1.0) * (t1 - t0)
    half = bucket_s / 2
    known = np.isfinite(stored_arr)
    end_fill = start if start is not None else math.inf
    fill = known & (t + half <= end_fill) & (capacity > 0)
    if start is None:
        plateau = np.zeros(len(t), dtype=bool)
    else:
        t_end = float(t.max()) + half if len(t) else start
        settle = max(2 * bucket_s, options.settle_fraction * (t_end - start))
        plateau = t - half >= start + settle
    return Segments(fill, plateau, start)

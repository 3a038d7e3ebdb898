"""A trial's peak once its replay buffer is full, projected from its own trajectory.

A budget search (:mod:`memsweep.budget.search`) must know early whether a trial will end over
its budget, long before the buffer is full. The buffer is what grows: each stored
transition costs about the same, so the trial's peak (the largest Σ PSS of its processes so far) rises
linearly with the transitions stored. The least-squares slope of peak against stored
transitions, over the results seen so far, extends that line to the buffer's capacity.

Pure functions on numbers, no Ray: the trainable calls them on every result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MIN_POINTS = 3
"""Results with a non-empty buffer needed before a slope is trusted at all."""


@dataclass(frozen=True)
class TrajectoryPoint:
    """One result of a trial: transitions in its buffer and its peak then."""

    replay_size: int
    """Transitions stored in the replay buffer."""
    peak_bytes: int
    """The trial's peak so far (largest Σ PSS of its processes), bytes."""


def fill_slope(points: Sequence[TrajectoryPoint]) -> float | None:
    """Bytes of peak per stored transition (least squares), or None without enough
    distinct buffer sizes. Never negative: the peak only grows, so a negative fit is noise."""
    usable = [p for p in points if p.replay_size > 0]
    if len(usable) < MIN_POINTS or len({p.replay_size for p in usable}) < 2:
        return None
    slope, _ = np.polyfit(
        [float(p.replay_size) for p in usable], [float(p.peak_bytes) for p in usable], 1
    )
    return max(0.0, float(slope))


def projected_peak(points: Sequence[TrajectoryPoint], capacity: int) -> int:
    """The peak when the buffer holds ``capacity`` transitions: the latest peak plus the
    slope times the transitions still to store; never below the latest peak, and equal
    to it when the buffer is full or no slope can be fitted yet."""
    if not points:
        return 0
    latest = points[-1]
    slope = fill_slope(points)
    remaining = max(0, capacity - latest.replay_size)
    if slope is None or remaining == 0:
        return latest.peak_bytes
    return latest.peak_bytes + round(slope * remaining)


def fill_fraction(replay_size: int | None, capacity: int | None) -> float:
    """Share of the buffer filled, 0–1 (0 without a buffer or a size)."""
    if not replay_size or not capacity or capacity <= 0:
        return 0.0
    return min(1.0, replay_size / capacity)

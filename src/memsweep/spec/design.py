"""Design expansion: which combinations of factor levels a study runs.

One home for the three fixed designs, used by :meth:`memsweep.spec.study.Study.points`
(the trials a sweep runs) and by :mod:`memsweep.analyze.designs` (which trials of a full
grid each design would have run):

- ``full``: every combination (``itertools.product``);
- ``one_at_a_time``: the base point (each factor's first level), then each factor moved
  alone to each of its other levels; ``base_repeats`` > 1 replicates the base point,
  spread evenly through the run order (so that a machine whose load drifts during the
  sweep shows as spread between the replicates, not as a factor's effect). With
  1 + Σ(levels − 1) points for as many model terms, the replicates are the design's
  residual degrees of freedom: ``base_repeats − 1`` of them. A replicated base point does
  not protect a factor moved to only one other level: that one trial is all that informs
  it, and losing it loses the factor. ``lone_level_repeats`` > 1 runs each such point
  that many times (the replicates after all the other points), so that any one lost
  trial still leaves every factor fitted;
- ``half_fraction``: the half of a two-level factorial whose product of ±1 codes is +1
  (generator I = ABC…, resolution k for k factors); factors with one level are held.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any, Literal

Design = Literal["full", "one_at_a_time", "half_fraction"]


def expand(
    levels: Sequence[Sequence[Any]],
    design: Design,
    base_repeats: int = 1,
    lone_level_repeats: int = 1,
) -> list[tuple[Any, ...]]:
    """The level combinations of ``design``, in run order.

    ``levels[i]`` lists factor ``i``'s levels, its first being the base level. Returns
    tuples of one level per factor. ``half_fraction`` codes a factor's first level -1 and
    its second +1; it expects 2 levels for every varied factor. ``base_repeats``
    (``one_at_a_time`` only) lists the base point that many times, the first at the
    start and the others spread evenly between the other points; ``lone_level_repeats``
    (``one_at_a_time`` only) lists each point that moves a factor to its only other level
    that many times, the replicates after the other moved points. Both are ignored by the
    other designs.
    """
    if design == "full":
        return list(itertools.product(*levels))
    if design == "half_fraction":
        return [
            combo
            for combo in itertools.product(*levels)
            if math.prod(
                -1 if list(values).index(value) == 0 else 1
                for value, values in zip(combo, levels, strict=True)
                if len(values) > 1
            )
            == 1
        ]
    base = tuple(values[0] for values in levels)
    moved = []
    for index, values in enumerate(levels):
        for value in values[1:]:
            combo = list(base)
            combo[index] = value
            moved.append(tuple(combo))
    lone = [
        point
        for point, index in zip(moved, _moved_factor(levels), strict=True)
        if len(levels[index]) == 2
    ]
    moved += lone * (max(lone_level_repeats, 1) - 1)
    extra = max(base_repeats, 1) - 1
    # Replicate k (1..extra) comes after round(k·m/(extra+1)) of the m moved points.
    slots = [round(k * len(moved) / (extra + 1)) for k in range(1, extra + 1)]
    combos = [base]
    for done in range(len(moved) + 1):
        combos.extend([base] * slots.count(done))
        if done < len(moved):
            combos.append(moved[done])
    return combos


def _moved_factor(levels: Sequence[Sequence[Any]]) -> list[int]:
    """For each moved point of ``one_at_a_time``, in order, the index of the factor it moves."""
    return [index for index, values in enumerate(levels) for _ in values[1:]]

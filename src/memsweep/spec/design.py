"""Design expansion: which combinations of factor levels a study runs.

One home for the three fixed designs, used by :meth:`memsweep.spec.model.Study.points`
(the trials a sweep runs) and by :mod:`memsweep.analyze.designs` (which trials of a full
grid each design would have run):

- ``full``: every combination (``itertools.product``);
- ``one_at_a_time``: the base point (each factor's first level), then each factor moved
  alone to each of its other levels;
- ``half_fraction``: the half of a two-level factorial whose product of ±1 codes is +1
  (generator I = ABC…, resolution k for k factors); factors with one level are held.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any, Literal

Design = Literal["full", "one_at_a_time", "half_fraction"]


def expand(levels: Sequence[Sequence[Any]], design: Design) -> list[tuple[Any, ...]]:
    """The level combinations of ``design``, in run order.

    ``levels[i]`` lists factor ``i``'s levels, its first being the base level. Returns
    tuples of one level per factor. ``half_fraction`` codes a factor's first level -1 and
    its second +1; it expects 2 levels for every varied factor.
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
    combos = [base]
    for index, values in enumerate(levels):
        for value in values[1:]:
            combo = list(base)
            combo[index] = value
            combos.append(tuple(combo))
    return combos

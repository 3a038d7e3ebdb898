"""Sweep file → typed study: the first stage of the data path.

:mod:`~memsweep.spec.study` (the frozen :class:`Study`; its parts in ``factors``, ``env``,
``search``, ``settings``; one trial's values in ``point``), :mod:`~memsweep.spec.design`
(which trials a design runs), :mod:`~memsweep.spec.load` (reading a file safely, one-line
errors).
"""

from __future__ import annotations

from memsweep.spec.design import Design, expand
from memsweep.spec.env import EnvSpec
from memsweep.spec.factors import (
    FACTOR_NAMES,
    FRAMEWORKS,
    MAXIMIZABLE,
    Factors,
    Framework,
    ModelSpec,
)
from memsweep.spec.load import describe_fields, load_study, parse_study
from memsweep.spec.point import TrialPoint, point_from_config
from memsweep.spec.search import SearchSpec
from memsweep.spec.settings import ResourceSpec, SamplingSpec, StopSpec, TrainingSpec
from memsweep.spec.study import ALGORITHMS, REPLAY_ALGORITHMS, Study

__all__ = [
    "ALGORITHMS",
    "FACTOR_NAMES",
    "FRAMEWORKS",
    "MAXIMIZABLE",
    "REPLAY_ALGORITHMS",
    "Design",
    "EnvSpec",
    "Factors",
    "Framework",
    "ModelSpec",
    "ResourceSpec",
    "SamplingSpec",
    "SearchSpec",
    "StopSpec",
    "Study",
    "TrainingSpec",
    "TrialPoint",
    "describe_fields",
    "expand",
    "load_study",
    "parse_study",
    "point_from_config",
]

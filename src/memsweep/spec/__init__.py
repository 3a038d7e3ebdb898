"""Sweep file → typed study: the first stage of the data path.

:mod:`~memsweep.spec.model` (the frozen models), :mod:`~memsweep.spec.design` (which
trials a design runs), :mod:`~memsweep.spec.load` (reading a file safely, one-line errors).
"""

from __future__ import annotations

from memsweep.spec.design import Design, expand
from memsweep.spec.load import describe_fields, load_study, parse_study
from memsweep.spec.model import (
    ALGORITHMS,
    FACTOR_NAMES,
    FRAMEWORKS,
    MAXIMIZABLE,
    REPLAY_ALGORITHMS,
    EnvSpec,
    Factors,
    Framework,
    ModelSpec,
    ResourceSpec,
    SamplingSpec,
    SearchSpec,
    StopSpec,
    Study,
    TrainingSpec,
    TrialPoint,
    point_from_config,
)

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

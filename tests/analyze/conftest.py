"""The synthetic factorial sweep (known coefficients) and its analysis, for the factor
model and prediction tests."""

from __future__ import annotations

import pytest

from memsweep.analyze import Analysis
from memsweep.testing.synthetic import SynthSweep, analysis_of, factorial_sweep


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> SynthSweep:
    return factorial_sweep(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def analysis(sweep: SynthSweep) -> Analysis:
    return analysis_of(sweep)

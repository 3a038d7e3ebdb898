"""The honest held-back test, on real measurements.

``results/reference-heldback/`` is a real sweep (``sweeps/heldback.yaml``, committed as a
reference result): DQN on 4 KiB observations with replay capacities 500, 1,000, 2,000 and
20,000. The analysis sees only the three small ones — all at most 1/10 of the held-back
capacity — and predicts the fourth trial's plateau, which it never saw.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from memsweep.analyze import PredictPoint, analyze_results, predict

REFERENCE = Path(__file__).resolve().parents[2] / "results" / "reference-heldback"
HELD_BACK = 20_000


def test_fitted_on_capacities_a_tenth_of_a_held_back_trial_the_model_predicts_its_plateau(
    tmp_path: Path,
) -> None:
    # GIVEN the real sweep with the largest trial removed from the trials table
    seen = tmp_path / "seen"
    shutil.copytree(REFERENCE, seen, ignore=shutil.ignore_patterns("analysis", "tune"))
    trials = pq.read_table(seen / "trials.parquet")
    small = trials.filter(pc.less_equal(trials["replay_capacity"], HELD_BACK // 10))
    assert small.num_rows == 3 and trials.num_rows == 4
    pq.write_table(small, seen / "trials.parquet")
    # WHEN the model fitted on those three predicts the held-back capacity
    prediction = predict(analyze_results(seen), PredictPoint(replay_capacity=HELD_BACK))
    # THEN it lands within 10% of the plateau measured in the trial it never saw
    full = analyze_results(REFERENCE)
    table = full.trial_table
    held_back = table[table["replay_capacity"] == HELD_BACK]
    assert bool(held_back["plateau_reached"].iloc[0]), (
        "the held-back trial must have filled its buffer"
    )
    truth = float(held_back["plateau__total"].iloc[0])
    predicted = prediction.total.plateau
    assert predicted.value == pytest.approx(truth, rel=0.10)
    # AND its interval contains the truth
    assert predicted.low <= truth <= predicted.high
    # AND the prediction says it extrapolates
    assert any("extrapolat" in warning for warning in prediction.warnings)

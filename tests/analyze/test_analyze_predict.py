"""Predictions and budgets from the factor models, through the API."""

from __future__ import annotations

from dataclasses import replace

import pytest

from memsweep.analyze import Analysis, PredictPoint, predict, solve_budget
from memsweep.analyze.prediction import prediction_text
from memsweep.errors import UsageError
from memsweep.testing.synthetic import (
    PSS_SHARE,
    SYSTEM_PROCESSES,
    SynthSweep,
    analysis_of,
    leak_sweep,
    mlp_params,
)

BIG = PredictPoint(replay_capacity=1_000_000, num_workers=8, model="512,512", framework="torch")


def test_a_prediction_gives_plateau_and_peak_per_role_and_in_total_with_intervals(
    analysis: Analysis, sweep: SynthSweep
) -> None:
    # GIVEN a measured configuration
    point = PredictPoint(replay_capacity=20_000, num_workers=2, model="256x256", framework="tf2")
    prediction = predict(analysis, point)
    # THEN each role and the total have a plateau and a peak with an interval around them
    for row in (*prediction.roles, prediction.total):
        assert row.plateau.low < row.plateau.value < row.plateau.high
        assert row.peak is not None and row.peak.low < row.peak.value < row.peak.high
    truth = sweep.truth.plateau_bytes(20_000, mlp_params([256, 256]), 2, "tf2")
    assert prediction.total.plateau.contains(truth)
    assert prediction.model_params_source == "measured"
    assert prediction.warnings == ()
    # AND the node total adds Ray's own processes and the driver, each its own figure
    assert prediction.total_with_system.plateau.value == pytest.approx(
        prediction.total.plateau.value + prediction.system_bytes + prediction.driver_bytes
    )
    ray_system, driver, sampler = (
        SYSTEM_PROCESSES[r] * PSS_SHARE for r in ("ray_system", "driver", "memsweep")
    )
    assert prediction.system_bytes == pytest.approx(ray_system, rel=0.01)  # Ray's own only
    assert prediction.driver_bytes == pytest.approx(driver, rel=0.01)
    assert prediction.sampler_bytes == pytest.approx(sampler, rel=0.01)
    # AND the table says what the node row includes and what it leaves out
    text = prediction_text(prediction)
    assert "Tune driver" in text and "Not included: memsweep's samplers" in text


def test_a_prediction_beyond_the_measured_range_warns_and_estimates_an_unseen_model(
    analysis: Analysis, sweep: SynthSweep
) -> None:
    prediction = predict(analysis, BIG)
    assert prediction.model_params_source == "estimated"
    assert prediction.point["model_params"] == pytest.approx(mlp_params([512, 512]))
    warnings = " ".join(prediction.warnings)
    assert "extrapolating: replay_capacity 1,000,000 is above the measured range" in warnings
    assert "extrapolating: num_workers 8" in warnings
    assert "512x512 was not in the sweep" in warnings
    truth = sweep.truth.plateau_bytes(1_000_000, mlp_params([512, 512]), 8, "torch")
    assert prediction.total.plateau.contains(truth)
    text = prediction_text(prediction)
    assert "total + ray + driver" in text and "warning: extrapolating" in text


def test_a_level_below_the_measured_range_is_named_as_the_user_wrote_it(
    analysis: Analysis,
) -> None:
    # GIVEN a capacity below the sweep's 10,000–50,000 (a whole number, under 1,000)
    small = PredictPoint(replay_capacity=500, num_workers=0, model="64,64", framework="torch")
    # WHEN predicted
    warnings = predict(analysis, small).warnings
    # THEN the warning names the level and the range without a decimal point
    assert "extrapolating: replay_capacity 500 is below the measured range 10,000–50,000" in (
        warnings
    )


def test_the_budget_answer_is_the_largest_capacity_that_fits(analysis: Analysis) -> None:
    # GIVEN a 64 GB node
    budget = 64 * 10**9
    answer = solve_budget(analysis, BIG, budget)
    # THEN the answer fits with its upper bound, and one more transition would not
    assert answer.largest_safe is not None and answer.largest_expected is not None
    assert answer.largest_expected >= answer.largest_safe > 1_000_000

    def upper(capacity: int) -> float:
        # The peak's upper bound as predict prints it (with the node's own processes)
        peak = predict(analysis, replace(BIG, replay_capacity=capacity)).total_with_system.peak
        assert peak is not None
        return peak.high

    assert upper(answer.largest_safe) <= budget < upper(answer.largest_safe + 1)
    assert answer.prediction is not None
    assert answer.prediction.point["replay_capacity"] == answer.largest_safe


def test_the_budget_can_be_solved_for_workers(analysis: Analysis) -> None:
    point = PredictPoint(replay_capacity=50_000, model="256x256", framework="torch")
    answer = solve_budget(analysis, point, 8 * 10**9, "num_workers")
    assert answer.largest_safe is not None
    # 0.9 GB + 0.42 GB buffer + ~0.25 GB per worker: about 24 workers in 8 GB
    assert 15 < answer.largest_safe < 30


def test_a_budget_too_small_for_anything_has_no_answer(analysis: Analysis) -> None:
    answer = solve_budget(analysis, BIG, 10**9)
    assert answer.largest_safe is None and answer.largest_expected is None


def test_a_factor_the_sweep_did_not_vary_cannot_be_predicted_elsewhere(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    single = analysis_of(leak_sweep(tmp_path_factory.getbasetemp()))
    with pytest.raises(UsageError, match=r"--num-workers 8: num_workers has a single value \(2\)"):
        predict(single, PredictPoint(replay_capacity=10_000, num_workers=8))
    # AND at the measured value the default is taken and the rest predicted
    prediction = predict(single, PredictPoint(replay_capacity=15_000))
    assert prediction.point["num_workers"] == 2 and prediction.point["framework"] == "torch"
    with pytest.raises(UsageError, match="cannot solve for num_workers"):
        solve_budget(single, PredictPoint(replay_capacity=10_000), 64 * 10**9, "num_workers")


def test_an_unknown_framework_or_a_missing_flag_is_refused(analysis: Analysis) -> None:
    with pytest.raises(UsageError, match="--framework tf2-eager: the sweep measured only"):
        predict(analysis, PredictPoint(100, 1, "256x256", "tf2-eager"))
    # (the levels as a sweep file writes them: whole numbers without ".0")
    with pytest.raises(UsageError, match=r"--num-workers is required: .*\((\d+, )+\d+\)$"):
        predict(analysis, PredictPoint(replay_capacity=100, model="256x256", framework="torch"))
    with pytest.raises(UsageError, match="--model-params"):
        predict(analysis, PredictPoint(100, 1, "c32k8s4+256", "torch"))


def test_env_runners_are_nothing_at_no_env_runner_and_an_unfitted_factor_is_said() -> None:
    # GIVEN a committed sweep of two trials, 0 and 2 env runners, too few to fit the
    # env runners' cost (the env_runner role exists only in the trial that had them)
    from pathlib import Path

    from memsweep.analyze import analyze_results

    corpus = Path(__file__).resolve().parents[2] / "results" / "corpus-2cpu-24gb"
    analysis = analyze_results(corpus / "dqn-torch")
    # WHEN a point without env runners is predicted
    prediction = predict(analysis, PredictPoint(num_workers=0))
    # THEN its env runners hold nothing (it predicted 444 MB, their level at 2 runners)
    (runners,) = [r for r in prediction.roles if r.role == "env_runner"]
    assert (runners.plateau.value, runners.plateau.high) == (0, 0)
    assert runners.peak is not None and runners.peak.high == 0
    # AND the prediction says it does not move with num_workers
    assert any(
        w.startswith("num_workers is not in the fitted model") for w in prediction.warnings
    ), prediction.warnings

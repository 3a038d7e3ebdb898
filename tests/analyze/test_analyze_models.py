"""Factor models on a synthetic sweep with known coefficients (generated Parquet)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from memsweep.analyze import Analysis, FittedModel, PredictPoint, predict
from memsweep.testing.synthetic import (
    HELD_BACK,
    OBS_BYTES,
    SynthSweep,
    analysis_of,
    held_back_sweep,
    label_params,
    leak_sweep,
)


@pytest.fixture(scope="module")
def plateau(analysis: Analysis) -> FittedModel:
    model = analysis.models.get("plateau")
    assert model is not None, analysis.models.errors
    return model


def _effect(model: FittedModel, name: str, framework: str = "torch"):  # type: ignore[no-untyped-def]
    return next(e for e in model.effects if e.name == name and e.at["framework"] == framework)


def test_every_trial_of_a_complete_sweep_is_analysed_and_reaches_its_plateau(
    analysis: Analysis, sweep: SynthSweep
) -> None:
    assert len(analysis.trials) == len(sweep.trials) == 54
    assert all(t.plateau_reached for t in analysis.trials)
    assert analysis.missing == ()
    assert analysis.data.metric == "pss_bytes"


def test_the_capacity_slope_recovers_bytes_per_transition_within_its_interval(
    plateau: FittedModel, sweep: SynthSweep
) -> None:
    # GIVEN trials whose buffer costs 8300 bytes per stored transition
    # WHEN the plateau is fitted on the four factors
    effect = _effect(plateau, "bytes_per_transition")
    # THEN the capacity slope's interval contains the truth, and it is tight (±3 %)
    assert effect.estimate.contains(sweep.truth.bytes_per_transition)
    assert effect.estimate.high - effect.estimate.low < 0.06 * sweep.truth.bytes_per_transition
    assert effect.unit == "bytes per transition"


def test_the_per_worker_cost_is_recovered_within_its_interval_for_each_framework(
    plateau: FittedModel, sweep: SynthSweep
) -> None:
    # GIVEN each env runner costs a framework-specific base plus 4 bytes per parameter
    for framework in ("torch", "tf2"):
        effect = _effect(plateau, "bytes_per_worker", framework)
        truth = sweep.truth.per_worker_bytes(effect.at["model_params"], framework)
        # THEN the marginal cost of one more env runner at the reference model matches
        assert effect.estimate.contains(truth), (framework, effect.estimate, truth)


def test_the_per_parameter_cost_counts_one_copy_per_env_runner(
    plateau: FittedModel, sweep: SynthSweep
) -> None:
    # GIVEN 16 bytes per parameter in the trainable and 4 in each env runner
    effect = _effect(plateau, "bytes_per_param")
    truth = sweep.truth.per_param_bytes(effect.at["num_workers"])
    # THEN the marginal cost per parameter at the reference worker count is 16 + 4·W
    assert effect.estimate.contains(truth)
    assert ("num_workers", "model_params") in plateau.formula.interactions


def test_framework_is_an_offset_plus_a_per_worker_interaction(
    plateau: FittedModel, sweep: SynthSweep
) -> None:
    assert ("framework", "num_workers") in plateau.formula.interactions
    offset = next(e for e in plateau.effects if e.name == "framework_offset[tf2]")
    workers = offset.at["num_workers"]
    truth = sweep.truth.framework_offset_bytes["tf2"] + workers * (
        sweep.truth.runner_base_bytes["tf2"] - sweep.truth.runner_base_bytes["torch"]
    )
    assert offset.estimate.contains(truth)


def test_three_capacities_keep_the_affine_buffer_law_without_a_curve(plateau: FittedModel) -> None:
    # The factorial sweep has three capacities: a line and a curve would differ by one
    # residual there, so no curve is a candidate (terms.CURVE_MIN_LEVELS)
    forms = {c.form: c for c in plateau.form_choices if c.factor == "replay_capacity"}
    assert list(forms) == ["replay_capacity"] and forms["replay_capacity"].chosen
    assert forms["replay_capacity"].loo_rmse_bytes > 0


def test_every_coefficient_has_an_interval_and_the_fit_reports_r2_and_loo_error(
    plateau: FittedModel,
) -> None:
    assert plateau.r2 > 0.99
    assert 0 < plateau.loo_rmse_bytes < 0.01 * plateau.result.model.endog.mean()
    for c in plateau.coefficients:
        assert c.estimate.low <= c.estimate.value <= c.estimate.high


def test_within_trial_fill_slopes_agree_with_the_analytic_footprint(
    analysis: Analysis, sweep: SynthSweep
) -> None:
    within = analysis.models.within_trial_bytes_per_transition
    assert within is not None and within.contains(sweep.truth.bytes_per_transition)
    assert analysis.models.analytic_bytes_per_transition == 2 * OBS_BYTES + 24


def test_role_predictions_add_up_to_the_total(analysis: Analysis) -> None:
    prediction = predict(
        analysis,
        PredictPoint(replay_capacity=30_000, num_workers=3, model="256x256", framework="tf2"),
    )
    # Each role's fit is constrained on its own (a per-unit cost that is negative and
    # indistinguishable from 0 is fixed at 0), so the sum matches to the size of such a term.
    assert sum(r.plateau.value for r in prediction.roles) == pytest.approx(
        prediction.total.plateau.value, rel=1e-3
    )
    assert {r.role for r in prediction.roles} == {"trainable", "env_runner"}


def test_fitted_on_small_capacities_the_model_predicts_a_ten_times_larger_trial(
    analysis: Analysis, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # GIVEN a model fitted on capacities up to 50 000 and a held-back trial at 500 000
    held = analysis_of(held_back_sweep(tmp_path_factory.getbasetemp()))
    measured = held.trial("held_back").total.plateau
    assert measured is not None
    assert max(analysis.trial_table["replay_capacity"]) * 10 <= HELD_BACK.replay_capacity
    # WHEN the held-back configuration is predicted
    prediction = predict(
        analysis,
        PredictPoint(
            replay_capacity=HELD_BACK.replay_capacity,
            num_workers=HELD_BACK.num_workers,
            model=HELD_BACK.model,
            framework=HELD_BACK.framework,
        ),
    )
    # THEN the plateau is within 10 %, its interval contains the measurement, and the
    # prediction says it extrapolates
    assert abs(prediction.total.plateau.value - measured.value) < 0.1 * measured.value
    assert prediction.total.plateau.contains(measured.value)
    assert any("extrapolating: replay_capacity" in w for w in prediction.warnings)


def test_a_factor_with_one_value_is_named_and_the_rest_is_fitted(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # GIVEN a sweep that varies only the replay capacity
    analysis = analysis_of(leak_sweep(tmp_path_factory.getbasetemp()))
    factors = {f.name: f for f in analysis.models.factors}
    # THEN the single-valued factors say so, and capacity is still fitted
    for name in ("num_workers", "framework", "model_params"):
        assert not factors[name].in_model
        assert "single value" in factors[name].note
    assert factors["replay_capacity"].in_model
    model = analysis.models.get("plateau")
    assert model is not None and model.formula.factors == ("replay_capacity",)
    assert any("num_workers has a single value (2)" in note for note in analysis.notes)


def test_trials_are_read_with_the_expected_params(analysis: Analysis) -> None:
    table: pd.DataFrame = analysis.trial_table
    assert set(table["model_params"]) == {
        label_params(m) for m in ("64x64", "256x256", "1024x1024")
    }


def test_results_on_a_pyarrow_filesystem_are_read_through_the_dataset(
    sweep: SynthSweep, tmp_path: Path
) -> None:
    # GIVEN the sweep reached through a non-local pyarrow filesystem (a sub-tree view)
    import pyarrow.fs as pafs

    from memsweep.analyze.analysis import analyze_results
    from memsweep.store import Results

    fs = pafs.SubTreeFileSystem(str(sweep.path), pafs.LocalFileSystem())
    results = Results(uri="subtree://factorial", fs=fs, root="")
    # WHEN it is analysed
    remote = analyze_results(results)
    # THEN it gives the same fit as the local path
    local = analysis_of(sweep).models.get("plateau")
    fitted = remote.models.get("plateau")
    assert local is not None and fitted is not None
    assert fitted.coefficient("replay_capacity").estimate.value == pytest.approx(
        local.coefficient("replay_capacity").estimate.value, rel=1e-9
    )


def test_a_new_trials_interval_is_never_narrower_than_run_to_run_noise() -> None:
    from memsweep.analyze.models import DEFAULT_RUN_TO_RUN_CV, fit_quantity

    # GIVEN four trials on an exact line (a fit with no residual at all)
    table = pd.DataFrame(
        {"replay_capacity": [1e3, 2e3, 3e3, 4e3], "plateau__total": [600e6, 610e6, 620e6, 630e6]},
        index=["a", "b", "c", "d"],
    )
    model = fit_quantity("plateau", table, "plateau__total", factors=("replay_capacity",))
    frame = model.predict(pd.DataFrame({"replay_capacity": [2.5e3]}))
    # THEN a new trial's interval still spans the run-to-run noise at that level
    half = float(frame["obs_ci_upper"].iloc[0] - frame["mean"].iloc[0])
    assert model.run_to_run_cv == DEFAULT_RUN_TO_RUN_CV
    assert half >= DEFAULT_RUN_TO_RUN_CV * 615e6 * 4.30  # t(0.975, 2 df)
    # AND replicates that spread more than that widen it: their pooled SD is the noise
    spread = pd.concat(
        [table, pd.DataFrame({"replay_capacity": [1e3], "plateau__total": [630e6]}, index=["e"])]
    )
    wider = fit_quantity("plateau", spread, "plateau__total", factors=("replay_capacity",))
    assert wider.run_to_run_cv > 0.02

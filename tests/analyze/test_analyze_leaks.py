"""Growth verdicts and phases on planted leaks, pure buffer fill, and a half-crashed sweep."""

from __future__ import annotations

import pytest

from memsweep.analyze import Analysis, AnalysisOptions, PredictPoint, analyze_results, predict
from memsweep.analyze.growth import GrowthRule
from memsweep.analyze.leaks import GrowthVerdict
from memsweep.report.emit import emit_ray
from memsweep.testing.synthetic import (
    LEAK_TRIALS,
    RUNNER_LEAK_BYTES_PER_H,
    SPIKE_BYTES,
    TRAINABLE_LEAK_BYTES_PER_H,
    SynthSweep,
    analysis_of,
    leak_sweep,
)
from memsweep.units import format_bytes, format_number

MB = 1e6


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> SynthSweep:
    return leak_sweep(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def analysis(sweep: SynthSweep) -> Analysis:
    return analysis_of(sweep)


def _trial(sweep: SynthSweep, trial_id: str):  # type: ignore[no-untyped-def]
    return next(t for t in LEAK_TRIALS if t.trial_id == trial_id)


def _steps_per_h(analysis: Analysis, trial_id: str) -> float:
    rate = analysis.trial(trial_id).steps_per_s
    assert rate is not None
    return rate * 3600


def test_a_planted_leak_in_the_trainable_is_measured_per_hour_and_per_env_step(
    analysis: Analysis,
) -> None:
    # GIVEN a trainable leaking 400 MB/h on top of a full buffer
    per_1m = TRAINABLE_LEAK_BYTES_PER_H / MB / _steps_per_h(analysis, "leak_trainable") * 1e6
    for role in ("trainable", "total"):
        verdict = analysis.verdict("leak_trainable", role)
        # THEN its rate's intervals contain the planted rate, per hour and per 1M env steps
        assert verdict.rate_mb_per_h is not None and verdict.rate_mb_per_1m_steps is not None
        assert verdict.rate_mb_per_h.contains(TRAINABLE_LEAK_BYTES_PER_H / MB), verdict.text
        assert verdict.rate_mb_per_1m_steps.contains(per_1m), verdict.text
    # AND at 2,500 env steps/s that is ~44 MB per 1M env steps: below the default threshold
    assert per_1m < GrowthRule().min_rate_bytes_per_step  # bytes per step = MB per 1M steps
    assert not analysis.verdict("leak_trainable", "trainable").flagged


def test_a_lower_threshold_flags_the_planted_leaks_on_their_roles(sweep: SynthSweep) -> None:
    # WHEN growth above 10 MB per 1M env steps counts, with no creep of a real RLlib run to
    # allow for (the synthetic sweep has none)
    rule = GrowthRule(min_rate_bytes_per_step=10.0, background_rate_bytes_per_step=0.0)
    options = AnalysisOptions(growth=rule)
    strict = analyze_results(sweep.path, options)
    # THEN the leaking roles are sustained growth, projected over the horizon, the others not
    for trial_id, role in (("leak_trainable", "trainable"), ("leak_runner", "env_runner")):
        verdict = strict.verdict(trial_id, role)
        assert verdict.verdict == "sustained growth", verdict.text
        assert verdict.text.startswith("sustained growth: +")
        assert verdict.projected_bytes is not None and verdict.projected_bytes.low > 0
    runner = strict.verdict("leak_runner", "env_runner").rate_mb_per_h
    assert runner is not None and runner.contains(RUNNER_LEAK_BYTES_PER_H / MB)
    assert not strict.verdict("leak_trainable", "env_runner").flagged
    assert not strict.verdict("leak_runner", "trainable").flagged
    assert not any(v.flagged for v in strict.verdicts if v.trial_id == "clean")


def test_a_projection_far_past_the_plateau_says_how_far(sweep: SynthSweep) -> None:
    # GIVEN the planted leak flagged, projected to 1M env steps and to 1B
    rule = GrowthRule(min_rate_bytes_per_step=10.0, background_rate_bytes_per_step=0.0)
    for horizon, far in ((1e6, False), (1e9, True)):
        strict = analyze_results(
            sweep.path, AnalysisOptions(growth=rule, horizon_env_steps=horizon)
        )
        verdict = strict.verdict("leak_trainable", "trainable")
        assert verdict.fit is not None and verdict.flagged
        measured = verdict.fit.plateau_env_steps
        # THEN only a horizon over 10x the plateau's env steps is said to be a straight line
        said = f"(a straight line {horizon / measured:,.0f}× the {measured:,.0f} env steps measured"
        assert (said in verdict.text) is far, verdict.text
        assert (measured * 10 <= horizon) is far


def _total_first(verdict: GrowthVerdict) -> bool:
    return verdict.role != "total"


def test_a_prediction_names_each_trial_with_sustained_growth_and_what_it_adds_by_the_horizon(
    sweep: SynthSweep, analysis: Analysis
) -> None:
    # GIVEN the planted leaks flagged (as above), projected to a horizon of 2M env steps
    rule = GrowthRule(min_rate_bytes_per_step=10.0, background_rate_bytes_per_step=0.0)
    strict = analyze_results(sweep.path, AnalysisOptions(growth=rule, horizon_env_steps=2e6))
    # WHEN a capacity is predicted, and Ray resource requests emitted for it
    prediction = predict(strict, PredictPoint(replay_capacity=10_000))
    emitted = emit_ray(prediction)
    # THEN each flagged trial is named, with its late rate and that rate over the horizon,
    # and whether it ran at the point predicted; the leak-free trial is not named
    about = {w.split(" ", 2)[1]: w for w in prediction.warnings if w.startswith("trial ")}
    assert set(about) == {"leak_trainable", "leak_runner"}, prediction.warnings
    for trial_id, where in (("leak_trainable", "this point"), ("leak_runner", "not this point")):
        # (the trial's total when that is flagged, else its role that is)
        flagged = sorted((v for v in strict.flagged if v.trial_id == trial_id), key=_total_first)
        verdict = flagged[0]
        rate, projected = verdict.rate_mb_per_1m_steps, verdict.projected_bytes
        assert rate is not None and projected is not None
        assert projected.value == pytest.approx(rate.value * MB * 2)  # MB per 1M × 2M steps
        warning = about[trial_id]
        assert f"; {where}) had sustained growth" in warning
        assert f"+{format_number(rate.value)} MB per 1M env steps" in warning
        assert f"+{format_bytes(projected.value)} over 2,000,000 env steps" in warning
        # AND the emitted requests carry the same warning
        assert f"# WARNING: {warning}" in emitted
    # AND with nothing flagged (the default rule here), no prediction warns of growth
    quiet = predict(analysis, PredictPoint(replay_capacity=10_000))
    assert not any("sustained growth" in w for w in quiet.warnings)


def test_pure_buffer_fill_is_not_flagged(analysis: Analysis) -> None:
    # GIVEN a trial whose memory grows only while its buffer fills
    for role in ("trainable", "env_runner", "total"):
        verdict = analysis.verdict("clean", role)
        # THEN after the plateau it says so and flags nothing
        assert verdict.verdict == "no growth", verdict.text
        assert verdict.text.startswith("no growth over ")
    clean = analysis.trial("clean")
    assert clean.total.fill_bytes_per_transition is not None
    assert clean.total.fill_bytes_per_transition.low > 0
    # AND a trial still filling says how far it is, and prints no leak bound
    for trial_id in ("no_plateau", "no_plateau_no_replay_size"):
        verdict = analysis.verdict(trial_id)
        assert verdict.verdict == "buffer fill"
        assert "14% full" in verdict.text and "cannot be ruled out" not in verdict.text
        assert not any(v.flagged for v in analysis.verdicts if v.trial_id == trial_id)


@pytest.mark.parametrize("trial_id", ["no_plateau", "no_plateau_no_replay_size"])
def test_a_trial_that_never_plateaus_says_so_and_extrapolates_with_an_interval(
    analysis: Analysis, sweep: SynthSweep, trial_id: str
) -> None:
    # GIVEN a buffer of 1 000 000 transitions that saw 140 000 env steps
    trial = analysis.trial(trial_id)
    # THEN the trial says its plateau was not reached and how full the buffer is
    assert not trial.plateau_reached and trial.total.plateau is None
    assert any("never reached its plateau (buffer 14% full" in note for note in trial.notes)
    # AND extrapolates the plateau with an interval that contains the truth
    extrapolated = trial.total.plateau_extrapolated
    truth = sweep.expected_plateau(_trial(sweep, trial_id))
    assert extrapolated is not None and extrapolated.contains(truth)
    assert extrapolated.high > extrapolated.low
    # AND it stays out of the factor models
    assert trial_id not in analysis.models.get("plateau").trial_ids  # type: ignore[union-attr]


def test_the_peak_is_max_sampled_pss_and_a_spike_between_samples_shows_in_vmhwm_only(
    analysis: Analysis,
) -> None:
    # GIVEN a 150 MB spike that no sample saw but VmHWM recorded
    total = analysis.trial("clean").total
    assert total.peak_bytes is not None and total.peak_sampled_bytes is not None
    assert total.hwm_sum_bytes is not None
    # THEN the peak is the one definition, max Σ PSS over the samples: the spike is not in it
    # (a deliberate choice, docs/analysis.md: one peak everywhere, shared pages once)
    assert total.peak_bytes == pytest.approx(total.peak_sampled_bytes, rel=0.02)
    # AND Σ VmHWM, kept beside it as an upper bound, is above the peak by at least the spike
    assert total.hwm_sum_bytes - total.peak_bytes >= SPIKE_BYTES - 25 * MB


def test_the_analysis_peak_is_the_live_tables_peak(sweep: SynthSweep, analysis: Analysis) -> None:
    # GIVEN the samples the analysis read
    from memsweep.store import open_results
    from memsweep.store.peaks import trial_peaks

    peaks = trial_peaks(open_results(str(sweep.path)).dataset("samples"))
    # THEN every trial's total peak is the figure the live table and run summary show
    for trial in analysis.trials:
        assert trial.total.peak_bytes == pytest.approx(peaks[trial.trial_id].peak_bytes, rel=1e-9)


def test_the_planted_baseline_and_buffer_cost_come_out_of_the_fill(
    analysis: Analysis, sweep: SynthSweep
) -> None:
    trial = analysis.trial("no_plateau")
    slope = trial.total.fill_bytes_per_transition
    assert slope is not None and slope.contains(sweep.truth.bytes_per_transition)


def test_a_crashed_trial_without_samples_is_listed_as_missing(analysis: Analysis) -> None:
    assert "crashed" not in {t.trial_id for t in analysis.trials}
    assert any("trial crashed (error: RayOutOfMemoryError" in line for line in analysis.missing)

"""Leak verdicts and phases on planted leaks, pure buffer fill, and a half-crashed sweep."""

from __future__ import annotations

import pytest

from memsweep.analyze import Analysis
from memsweep.testing.synthetic import (
    LEAK_TRIALS,
    RUNNER_LEAK_BYTES_PER_H,
    SPIKE_BYTES,
    TRAINABLE_LEAK_BYTES_PER_H,
    SynthSweep,
    analysis_of,
    leak_sweep,
)

MB = 1e6


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> SynthSweep:
    return leak_sweep(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def analysis(sweep: SynthSweep) -> Analysis:
    return analysis_of(sweep)


def _trial(sweep: SynthSweep, trial_id: str):  # type: ignore[no-untyped-def]
    return next(t for t in LEAK_TRIALS if t.trial_id == trial_id)


def test_a_planted_leak_in_the_trainable_is_flagged_with_a_rate_whose_interval_contains_it(
    analysis: Analysis,
) -> None:
    # GIVEN a trainable leaking 400 MB/h on top of a full buffer
    for role in ("trainable", "total"):
        verdict = analysis.verdict("leak_trainable", role)
        # THEN its role and the trial total are flagged, at the planted rate
        assert verdict.verdict == "unexplained_growth", verdict.text
        assert verdict.rate_mb_per_h is not None
        assert verdict.rate_mb_per_h.contains(TRAINABLE_LEAK_BYTES_PER_H / MB), verdict.text
        assert verdict.text.startswith("unexplained growth of ")
    assert not analysis.verdict("leak_trainable", "env_runner").flagged


def test_a_leak_in_one_env_runner_is_pinned_on_the_env_runner_role(analysis: Analysis) -> None:
    verdict = analysis.verdict("leak_runner", "env_runner")
    assert verdict.flagged and verdict.rate_mb_per_h is not None
    assert verdict.rate_mb_per_h.contains(RUNNER_LEAK_BYTES_PER_H / MB)
    assert verdict.rate_mb_per_1k_steps is not None and verdict.rate_mb_per_1k_steps.value > 0
    assert not analysis.verdict("leak_runner", "trainable").flagged


def test_pure_buffer_fill_is_not_flagged(analysis: Analysis) -> None:
    # GIVEN a trial whose memory grows only while its buffer fills
    for role in ("trainable", "env_runner", "total"):
        verdict = analysis.verdict("clean", role)
        # THEN after the plateau it says so and flags nothing
        assert verdict.verdict == "no_growth", verdict.text
        assert verdict.text.startswith("no growth after plateau")
    clean = analysis.trial("clean")
    assert clean.total.fill_bytes_per_transition is not None
    assert clean.total.fill_bytes_per_transition.low > 0
    # AND the growth of a trial still filling is put on the buffer, not on a leak
    for trial_id in ("no_plateau", "no_plateau_no_replay_size"):
        assert analysis.verdict(trial_id).verdict == "buffer_fill"
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


def test_the_true_peak_includes_a_spike_between_samples(analysis: Analysis) -> None:
    # GIVEN a 150 MB spike that no sample saw but VmHWM recorded
    total = analysis.trial("clean").total
    assert total.peak_bytes is not None and total.peak_sampled_bytes is not None
    # THEN the peak is above every sample by about the spike (shared pages counted once)
    assert total.peak_bytes - total.peak_sampled_bytes == pytest.approx(SPIKE_BYTES, abs=25 * MB)


def test_the_planted_baseline_and_buffer_cost_come_out_of_the_fill(
    analysis: Analysis, sweep: SynthSweep
) -> None:
    trial = analysis.trial("no_plateau")
    slope = trial.total.fill_bytes_per_transition
    assert slope is not None and slope.contains(sweep.truth.bytes_per_transition)


def test_a_crashed_trial_without_samples_is_listed_as_missing(analysis: Analysis) -> None:
    assert "crashed" not in {t.trial_id for t in analysis.trials}
    assert any("trial crashed (error: RayOutOfMemoryError" in line for line in analysis.missing)


def test_a_leak_slower_than_the_minimum_rate_is_not_called_a_leak(sweep: SynthSweep) -> None:
    from memsweep.analyze import AnalysisOptions, analyze_results

    # WHEN only growth above 1 GB/h counts
    strict = analyze_results(sweep.path, AnalysisOptions(min_leak_mb_per_h=1000))
    # THEN the planted 400 MB/h leak is not flagged
    assert not strict.flagged

"""No figure the analysis prints is negative bytes, outside its own interval, or a peak
below its plateau (issue #13 item 5): hypothesis properties over the committed real runs
and synthetic sweeps, for the fitted sweep, for sweeps with trials lost, and for
predictions anywhere from 0 to ten times the measured range."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memsweep.analyze import Analysis, PredictPoint, analyze_results, predict
from memsweep.analyze.models import ModelSet, fit_all
from memsweep.analyze.prediction import Prediction, prediction_text
from memsweep.errors import MemsweepError
from memsweep.report.blocks import to_markdown
from memsweep.report.document import summary_text
from memsweep.report.sections import report_blocks
from memsweep.testing.synthetic import analysis_of, capacity_sweep, leak_sweep
from memsweep.units import Estimate

REPO = Path(__file__).resolve().parents[2]
COMMITTED = ("claims-2cpu-24gb/interaction", "claims-2cpu-24gb/workers", "reference-heldback")

NEGATIVE_BYTES = re.compile(r"(?<![\w.])[-−]\s?\d[\d,.]*\s?(?:B|kB|MB|GB|TB)\b(?!/| per)")
"""A negative memory figure in printed text (growth rates, per-time or per-step, excepted)."""


@pytest.fixture(scope="module")
def analyses(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Analysis]:
    root = tmp_path_factory.getbasetemp()
    out = {name: analyze_results(REPO / "results" / name) for name in COMMITTED}
    out["reference-default"] = analyze_results(REPO / "results" / "reference-default")
    out["synthetic capacity"] = analysis_of(capacity_sweep(root))
    out["synthetic leaks"] = analysis_of(leak_sweep(root))
    return out


def _coherent(estimate: Estimate, what: str) -> None:
    assert estimate.low <= estimate.value <= estimate.high, what
    assert estimate.low >= 0, what


def _check_figures(analysis: Analysis) -> None:
    for trial in analysis.trials:
        for role in trial.roles:
            what = f"{analysis.name} {trial.trial_id} {role.role}"
            for estimate in (role.baseline, role.plateau, role.plateau_extrapolated):
                if estimate is not None:
                    assert estimate.low <= estimate.value <= estimate.high, what
            for estimate in (role.baseline, role.plateau):
                if estimate is not None:
                    _coherent(estimate, what)
            if role.baseline and role.plateau:
                assert role.baseline.value <= role.plateau.value, what
            if role.plateau and role.peak_bytes is not None:
                assert role.plateau.value <= role.peak_bytes, what
            assert role.peak_bytes is None or role.peak_bytes >= 0, what
    _check_models(analysis.models, analysis.name)


def _check_models(models: ModelSet, name: str) -> None:
    for model in models.models.values():
        for effect in (*model.effects, *model.zero_effects):
            estimate = effect.estimate
            assert estimate.low <= estimate.value <= estimate.high, f"{name} {effect.name}"
        for coefficient in model.coefficients:
            estimate = coefficient.estimate
            assert estimate.low <= estimate.value <= estimate.high, f"{name} {coefficient.term}"


def _check_prediction_text(text: str) -> None:
    assert not NEGATIVE_BYTES.search(text), text


@pytest.mark.parametrize("name", [*COMMITTED, "synthetic capacity", "synthetic leaks"])
def test_every_figure_of_a_sweep_is_coherent(analyses: dict[str, Analysis], name: str) -> None:
    analysis = analyses[name]
    _check_figures(analysis)
    trials_table = to_markdown(report_blocks(analysis, ()))
    trials_section = trials_table.split("## Trials", 1)[1].split("## ", 1)[0]
    assert not NEGATIVE_BYTES.search(trials_section)
    for line in summary_text(analysis).splitlines():
        if "vs" not in line and "growth" not in line:
            assert not NEGATIVE_BYTES.search(line), line


def _point(analysis: Analysis, data: st.DataObject) -> PredictPoint:
    """A configuration anywhere from 0 to 10 × the measured range of each varied factor."""
    settings_: list[tuple[str, float | str]] = []
    for info in analysis.models.factors:
        if info.name == "model_params" or len(info.values) < 2:
            continue
        if all(isinstance(v, int | float) for v in info.values):
            top = max(float(v) for v in info.values)
            value = data.draw(st.integers(0, max(int(10 * top), 1)), label=info.name)
            settings_.append((info.name, float(value)))
        else:
            settings_.append((info.name, data.draw(st.sampled_from(info.values), label=info.name)))
    return PredictPoint(settings=tuple(settings_))


def _check_prediction(analysis: Analysis, point: PredictPoint) -> None:
    try:
        prediction = predict(analysis, point)
    except MemsweepError:
        return  # A point the models cannot reach is refused in one line, not predicted.
    for row in (*prediction.roles, prediction.total, prediction.total_with_system):
        _coherent(row.plateau, row.role)
        if row.peak is not None:
            _coherent(row.peak, row.role)
            assert row.peak.value >= row.plateau.value, row.role
    # the total holds every role: its peak (each end too) is at least each role's
    total = prediction.total.peak
    for role in prediction.roles:
        if total is not None and role.peak is not None:
            assert total.value >= role.peak.value, role.role
            assert total.low >= role.peak.low and total.high >= role.peak.high, role.role
    _check_prediction_text(prediction_text(prediction))


def test_a_total_peak_is_never_below_a_role_it_holds() -> None:
    # GIVEN the loaded reference run, whose total peak model, fitted apart, once predicted
    # 1.63 GB with no env runner while the trainable alone was 1.73 GB
    analysis = analyze_results(REPO / "results" / "reference-loaded")
    point = PredictPoint(replay_capacity=100_000, num_workers=0, model="64,64", framework="torch")
    # WHEN that point is predicted, THEN the total's peak holds the trainable's
    _check_prediction(analysis, point)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
@pytest.mark.parametrize("name", COMMITTED)
def test_predictions_anywhere_are_never_negative_nor_below_their_plateau(
    analyses: dict[str, Analysis], name: str, data: st.DataObject
) -> None:
    analysis = analyses[name]
    if analysis.models.get("plateau") is None:
        return
    _check_prediction(analysis, _point(analysis, data))


def _figures(prediction: Prediction) -> dict[tuple[str, str], float]:
    rows = (*prediction.roles, prediction.total)
    return {
        **{(row.role, "plateau"): row.plateau.value for row in rows},
        **{(row.role, "peak"): row.peak.value for row in rows if row.peak is not None},
    }


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
@pytest.mark.parametrize("name", [*COMMITTED, "reference-default"])
def test_a_factor_moved_further_beyond_the_measured_range_never_lowers_a_figure(
    analyses: dict[str, Analysis], name: str, data: st.DataObject
) -> None:
    # GIVEN a point anywhere up to 10x the measured range of each factor
    analysis = analyses[name]
    plateau = analysis.models.get("plateau")
    if plateau is None:
        return
    point = _point(analysis, data)
    try:
        far = _figures(predict(analysis, point))
    except MemsweepError:
        return
    # WHEN one factor beyond its range is brought back to the range's edge, the rest kept
    for factor, (low, high) in plateau.ranges.items():
        value = dict(point.settings).get(factor)
        if not isinstance(value, float) or low <= value <= high:
            continue
        edge = [(k, min(max(float(v), low), high) if k == factor else v) for k, v in point.settings]
        near = _figures(predict(analysis, replace(point, settings=tuple(edge))))
        # THEN no role's plateau or peak is lower out there than at the edge
        for key, figure in near.items():
            assert far[key] >= figure - 1.0, (factor, value, key, far[key], figure)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
@pytest.mark.parametrize("name", COMMITTED)
def test_with_trials_lost_every_fitted_figure_stays_coherent(
    analyses: dict[str, Analysis], name: str, data: st.DataObject
) -> None:
    # GIVEN a committed run with some of its trials lost
    analysis = analyses[name]
    table = analysis.trial_table
    keep = data.draw(
        st.lists(st.sampled_from(list(table.index)), min_size=2, unique=True), label="kept"
    )
    subset = table.loc[sorted(keep)]
    # WHEN refitted on what is left
    models = fit_all(
        subset, analysis.models.roles, analysis.options.confidence, analysis.data.factor_names
    )
    # THEN every fitted figure lies in its interval, and predictions stay coherent
    _check_models(models, name)
    lost = replace(analysis, models=models, trial_table=subset)
    if models.get("plateau") is not None:
        _check_prediction(lost, _point(lost, data))


def test_the_property_scan_finds_a_negative_figure() -> None:
    # The scan itself can fail: a negative memory figure is caught, a rate is not.
    assert NEGATIVE_BYTES.search("trainable  -99.1 MB  0 B – 350 MB")
    assert not NEGATIVE_BYTES.search("growth -406.1 MB/h") and not NEGATIVE_BYTES.search(
        "+3 MB per 1M env steps"
    )

"""The report's plots read as people read them: a legend of levels for a factor with few
values, every trial labelled, a unit on every axis, the full buffer and the fit marked.
Drawn from the committed reference run (results/reference-default, a real 8-trial sweep)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from memsweep.analyze.analysis import Analysis, analyze_results
from memsweep.report.plots import (
    MAX_DISCRETE_LEVELS,
    _colour_map,
    factor_label,
    memory_over_steps,
    peak_vs_factors,
    roles_stacked,
    trial_labels,
)

REFERENCE = Path(__file__).parents[2] / "results" / "reference-default"


@pytest.fixture(scope="module")
def analysis() -> Analysis:
    return analyze_results(str(REFERENCE))


def test_a_two_level_numeric_factor_gets_a_legend_of_its_two_values_not_a_colour_bar() -> None:
    colours = _colour_map(pd.Series([0, 2, 0, 0, 2]))
    assert colours.norm is None and colours.levels == (0, 2)
    assert colours.colour(0) != colours.colour(2)


def test_a_factor_with_many_numeric_values_gets_a_colour_bar() -> None:
    values = pd.Series([float(2**i) for i in range(MAX_DISCRETE_LEVELS + 1)])
    colours = _colour_map(values)
    assert colours.norm is not None and colours.levels == ()


def test_trial_labels_drop_the_runs_common_prefix_only_when_every_id_shares_it() -> None:
    assert trial_labels(["1ab5c_00000", "1ab5c_00006"]) == {
        "1ab5c_00000": "00000",
        "1ab5c_00006": "00006",
    }
    assert trial_labels(["1ab5c_00000", "9f9f9_00000"]) == {
        "1ab5c_00000": "1ab5c_00000",
        "9f9f9_00000": "9f9f9_00000",
    }


def test_memory_over_steps_labels_every_trial_and_marks_buffer_and_fit(
    analysis: Analysis, tmp_path: Path
) -> None:
    plot = memory_over_steps(analysis, tmp_path)
    assert plot is not None and plot.figure is not None and (tmp_path / plot.name).is_file()
    panels = [ax for ax in plot.figure.axes if ax.get_title().startswith("coloured by")]
    # No colour bar: every factor of the default study has at most three values.
    assert len(plot.figure.axes) == len(panels) == 4
    labels = trial_labels(list(analysis.trial_table.index.astype(str)))
    for ax in panels:
        assert "GB" in ax.get_ylabel() and ax.get_xlabel() == "env steps sampled"
        texts = {t.get_text() for t in ax.texts}
        assert set(labels.values()) <= texts
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert "buffer full" in legend and "fitted plateau" in legend
    workers = next(ax for ax in panels if ax.get_title() == "coloured by num_workers")
    legend = workers.get_legend()
    assert legend.get_title().get_text() == "num_workers, env runners"
    assert [t.get_text() for t in legend.get_texts()][2:] == ["0", "2"]


def test_peak_vs_each_factor_has_its_band_units_and_trial_labels(
    analysis: Analysis, tmp_path: Path
) -> None:
    plot = peak_vs_factors(analysis, tmp_path)
    assert plot is not None and plot.figure is not None
    axes = plot.figure.axes
    assert {ax.get_xlabel() for ax in axes} == {
        factor_label(f, analysis.trial_table[f])
        for f in ("replay_capacity", "model_params", "num_workers", "framework")
    }
    for ax in axes:
        assert "GB" in ax.get_ylabel()
        shown = ", ".join(t.get_text() for t in ax.texts)
        assert all(
            label in shown for label in trial_labels(list(analysis.trial_table.index)).values()
        )
    numeric = [ax for ax in axes if ax.get_xlabel() != "framework (level)"]
    assert all(ax.collections for ax in numeric)  # the fit and prediction bands
    workers = next(ax for ax in axes if ax.get_xlabel().startswith("num_workers"))
    assert [t.get_text() for t in workers.get_xticklabels()] == ["0", "2"]


def test_roles_are_stacked_with_units(analysis: Analysis, tmp_path: Path) -> None:
    plot = roles_stacked(analysis, tmp_path)
    assert plot is not None and plot.figure is not None
    with_runners = [
        ax
        for ax in plot.figure.axes
        if "env_runner" in [t.get_text() for t in ax.get_legend().get_texts()]
    ]
    assert with_runners, "the trial with 2 env runners shows its env_runner band"
    for ax in plot.figure.axes:
        assert ax.get_xlabel().endswith(", s") and "GB" in ax.get_ylabel()

"""The report's tables as a reader sees them: on the committed default run and on a
synthetic sweep whose per-worker cost differs between frameworks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from memsweep.analyze import Analysis, analyze_results
from memsweep.analyze.formula import Form, Formula
from memsweep.analyze.terms import choose_forms
from memsweep.report.blocks import Table
from memsweep.report.sections import report_blocks
from memsweep.testing.synthetic import analysis_of, factorial_sweep
from memsweep.units import format_bytes, natural_order

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def reference() -> Analysis:
    return analyze_results(REPO / "results" / "reference-default")


@pytest.fixture(scope="module")
def factorial(tmp_path_factory: pytest.TempPathFactory) -> Analysis:
    return analysis_of(factorial_sweep(tmp_path_factory.getbasetemp()))


def tables(analysis: Analysis, first_header: str) -> list[Table]:
    return [
        b
        for b in report_blocks(analysis, ())
        if isinstance(b, Table) and b.header[0] == first_header
    ]


def test_an_effect_the_same_at_every_framework_is_one_row_taken_at_both(
    reference: Analysis,
) -> None:
    # GIVEN the default run: no interaction, so every per-unit cost is the same at torch and tf2
    for table in tables(reference, "effect"):
        # THEN no two rows print the same but for where they are taken
        printed = [row[:4] for row in table.rows]
        assert len(printed) == len(set(printed)), table.rows
        # AND a per-unit cost names both frameworks it holds at
        per_transition = next(row for row in table.rows if row[0] == "bytes_per_transition")
        assert "framework=torch or tf2" in per_transition[4]


def test_an_effect_that_differs_between_frameworks_keeps_a_row_for_each(
    factorial: Analysis,
) -> None:
    # GIVEN a sweep where env runners cost more under tf2 (a per-worker interaction)
    table = tables(factorial, "effect")[0]
    per_worker = [row for row in table.rows if row[0] == "bytes_per_worker"]
    # THEN its two costs are two rows, each at its own framework
    assert len(per_worker) == 2
    assert {row[4].rsplit("framework=", 1)[1] for row in per_worker} == {"torch", "tf2"}
    assert per_worker[0][1] != per_worker[1][1]
    # AND a cost without the interaction is one row
    assert len([row for row in table.rows if row[0] == "bytes_per_transition"]) == 1


def test_factor_values_are_listed_in_numeric_order(reference: Analysis) -> None:
    rows = {row[0]: row[1] for row in tables(reference, "factor")[0].rows}
    assert rows["replay_capacity"] == "2,000, 5,000, 12,000"
    assert rows["model_params"] == "69,890, 1,051,138"


def test_the_trials_table_shows_sum_of_vmhwm_at_or_above_the_peak(reference: Analysis) -> None:
    (table,) = [t for t in tables(reference, "trial") if "Σ VmHWM" in t.header]
    column = table.header.index("Σ VmHWM")
    shown = {row[0]: row[column] for row in table.rows}
    for trial in reference.trials:
        hwm = trial.total.hwm_sum_bytes
        assert hwm is not None and trial.total.peak_bytes is not None
        # Each process's high-water mark is at least its RSS, which is at least its PSS.
        assert hwm >= trial.total.peak_bytes, trial.trial_id
        assert shown[trial.trial_id] == format_bytes(hwm)


def test_no_form_is_named_with_a_power_of_one(reference: Analysis) -> None:
    forms = [row[1] for table in tables(reference, "factor")[1:] for row in table.rows]
    assert forms, "the default run has form tables"
    assert not [f for f in forms if f.endswith("^1")], forms
    assert Form("replay_capacity", "power", 1.0).column == "replay_capacity"
    assert Form("replay_capacity", "power", 1.1).column == "replay_capacity^1.1"


def test_a_power_profiled_to_one_is_listed_once_as_the_linear_form() -> None:
    # GIVEN memory exactly linear in a factor with five values
    x = np.array([1_000.0, 2_000.0, 4_000.0, 8_000.0, 16_000.0])
    y = 700e6 + 5_000.0 * x
    df = pd.DataFrame({"replay_capacity": x})
    formula = Formula(forms=(Form("replay_capacity", scale=float(x.max())),))
    # WHEN the forms are compared
    chosen, choices = choose_forms(formula, df, y)
    # THEN linear is chosen, and no second row stands for x^1
    names = [c.form for c in choices]
    assert names.count("replay_capacity") == 1
    assert not [n for n in names if n.endswith("^1")], names
    assert [c.form for c in choices if c.chosen] == ["replay_capacity"]
    assert chosen.form("replay_capacity") == Form("replay_capacity", scale=float(x.max()))


@given(st.lists(st.one_of(st.integers(-(10**9), 10**9), st.text(max_size=5)), max_size=8))
def test_natural_order_puts_numbers_by_value_before_text(values: list[int | str]) -> None:
    ordered = natural_order(values)
    numbers = [v for v in values if isinstance(v, int)]
    assert ordered[: len(numbers)] == sorted(numbers)
    assert sorted(ordered[len(numbers) :]) == sorted(v for v in values if isinstance(v, str))


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([12_000, 2_000, 5_000], [2_000, 5_000, 12_000]),
        ([0.5, "torch", 10, 2, "tf2"], [0.5, 2, 10, "tf2", "torch"]),
        (["512x512x512", "64x64", "256x256"], ["64x64", "256x256", "512x512x512"]),
        (["size=10", "size=2"], ["size=2", "size=10"]),
    ],
)
def test_natural_order_reads_digit_runs_as_numbers(values: list[Any], expected: list[Any]) -> None:
    assert natural_order(values) == expected

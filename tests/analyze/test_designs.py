"""Fewer trials than the full grid: which design, and what it costs in prediction error.

A user with four factors reads docs/designs.md, picks `design: half_fraction` or
`mode: qmc`, and wants to know how much worse the predictions get. The comparison runs
on a full grid whose truth is planted (tests/synthetic.py), so each design's error is
measured against known trials it did not run.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from memsweep.analyze.designs import (
    compare_designs,
    designs_report,
    half_fractions,
    held_out_rmse,
    one_at_a_time,
    qmc_points,
    trials_to_reach,
)
from memsweep.errors import SpecError
from memsweep.spec import parse_study
from memsweep.testing.synthetic import SynthTrial, analysis_of, factorial_sweep, write_sweep


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    table = analysis_of(factorial_sweep(tmp_path_factory.mktemp("designs"))).trial_table
    return table.dropna(subset=["plateau__total"])


def test_more_qmc_trials_predict_the_left_out_grid_better(grid) -> None:  # type: ignore[no-untyped-def]
    results = {r.design: r for r in compare_designs(grid, sizes=[6, 18])}
    full = results["full grid (leave-one-out)"]
    assert full.trials == 54 and math.isfinite(full.rmse_bytes)
    few, many = results["Optuna QMC, 6 trials"], results["Optuna QMC, 18 trials"]
    assert few.trials == 6 and many.trials == 18
    assert many.rmse_bytes < few.rmse_bytes
    # One at a time runs 1 + Σ(levels − 1) = 8 trials and can predict the rest.
    oat = results["one at a time"]
    assert oat.trials == 8 and math.isfinite(oat.rmse_bytes)


def test_qmc_points_are_distinct_grid_trials_and_repeatable(grid) -> None:  # type: ignore[no-untyped-def]
    first = qmc_points(grid, 10, seed=3)
    assert len(first) == len(set(first)) == 10
    assert set(first) <= set(grid.index)
    assert qmc_points(grid, 10, seed=3) == first


def test_a_design_missing_a_factor_level_cannot_predict(grid) -> None:  # type: ignore[no-untyped-def]
    torch_only = grid[grid["framework"] == "torch"].index.tolist()
    assert math.isnan(held_out_rmse(grid, torch_only))
    base = {
        "replay_capacity": 10_000,
        "model_params": grid["model_params"].min(),
        "num_workers": 1,
        "framework": "torch",
    }
    assert len(one_at_a_time(grid, base)) == 8


def test_the_half_fraction_is_balanced(tmp_path: Path) -> None:
    trials = [
        SynthTrial(f"h{c}{w}{f}", c, "64x64", w, f, plateau_s=10)
        for c in (5_000, 20_000)
        for w in (0, 2)
        for f in ("torch", "tf2")
    ]
    table = analysis_of(write_sweep(tmp_path / "h", trials, seed=4)).trial_table
    halves = half_fractions(table)
    assert [len(h) for h in halves] == [4, 4]
    assert set(halves[0]).isdisjoint(halves[1])
    for half in halves:
        rows = table.loc[half]
        for factor in ("replay_capacity", "num_workers", "framework"):
            assert rows[factor].value_counts().tolist() == [2, 2]


def test_each_size_is_tried_once_and_one_that_leaves_nothing_out_is_refused(grid) -> None:  # type: ignore[no-untyped-def]
    designs = [r.design for r in compare_designs(grid, sizes=[6, 6])]
    assert designs.count("Optuna QMC, 6 trials") == 1
    # (it was dropped without a word: the user asked for a figure that cannot exist)
    with pytest.raises(ValueError, match="leaves none of the 54 grid points out"):
        compare_designs(grid, sizes=[6, 54])


def test_report_says_how_many_trials_reach_the_full_grid_error(grid) -> None:  # type: ignore[no-untyped-def]
    text = designs_report("factorial", grid, sizes=[6, 12, 24, 36])
    assert "| one at a time | 8 |" in text
    assert "Trials needed" in text
    reach = trials_to_reach(compare_designs(grid, sizes=[6, 12, 24, 36]))
    assert set(reach) >= {"one at a time", "Optuna QMC", "random"}


def _study(design: str, capacities: list[int]) -> dict[str, object]:
    return {
        "name": "hf",
        "env": "CartPole-v1",
        "factors": {
            "replay_capacity": capacities,
            "model": ["64,64", "256,256"],
            "num_workers": [0, 2],
            "framework": ["torch", "tf2"],
        },
        "search": {"mode": "grid", "design": design},
    }


def test_half_fraction_runs_half_the_grid_with_every_level_balanced() -> None:
    study = parse_study(_study("half_fraction", [1000, 5000]))
    points = study.points()
    assert len(points) == 8 == len(parse_study(_study("full", [1000, 5000])).points()) // 2
    for name in ("replay_capacity", "num_workers", "framework"):
        values = [getattr(p, name) for p in points]
        assert sorted(values.count(v) for v in set(values)) == [4, 4]


def test_half_fraction_refuses_three_levels_and_names_the_way_out() -> None:
    with pytest.raises(SpecError, match=r"replay_capacity \(3\).*mode qmc"):
        parse_study(_study("half_fraction", [1000, 5000, 9000]))

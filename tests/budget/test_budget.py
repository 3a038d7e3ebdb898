"""Budget search: the largest replay capacity (or weighted combination) under a budget.

Pure tests of the sweep-file keys, the trajectory projection, the stopper and the
proposals (with real Optuna), then one real-Ray search on a small, fast workload.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from optuna.distributions import CategoricalDistribution

from memsweep.budget.report import grid_comparison_study, grid_report
from memsweep.budget.search import (
    BudgetSampler,
    BudgetState,
    BudgetStopper,
    Observation,
    plan,
)
from memsweep.cli import main
from memsweep.errors import SpecError
from memsweep.run.projection import TrajectoryPoint, fill_slope, projected_peak
from memsweep.spec import describe_fields, parse_study, point_from_config

optuna.logging.set_verbosity(optuna.logging.WARNING)

CAPACITIES = [1000, 2000, 4000, 8000, 16000, 32000]

BUDGET_STUDY: dict[str, Any] = {
    "name": "budget",
    "env": {"id": "memsweep/Synthetic-v0", "obs_shape": [1024]},
    "factors": {
        "replay_capacity": CAPACITIES,
        "model": ["64,64", "256,256"],
        "num_workers": [0],
        "framework": ["torch"],
    },
    "search": {
        "mode": "budget",
        "budget": "1.2GB",
        "maximize": "replay_capacity",
        "subject_to": {"model": "128,128"},
    },
    "stop": {"env_steps": 40000},
}


def with_search(**search: Any) -> dict[str, Any]:
    return {**BUDGET_STUDY, "search": {**BUDGET_STUDY["search"], **search}}


# -- the sweep file ------------------------------------------------------------------------


def test_a_budget_study_lists_its_candidates_as_the_grid_over_the_same_range() -> None:
    study = parse_study(BUDGET_STUDY)
    assert study.search.budget == 1_200_000_000
    candidates = study.budget_candidates()
    assert [p.replay_capacity for p in candidates] == CAPACITIES
    # The fixed model comes from subject_to, even though factors lists other ones.
    assert {p.model.label for p in candidates} == {"128x128"}
    assert study.points() == candidates
    # A trial's config (flat keys, model by label) maps back onto that model.
    config = {"replay_capacity": 4000, "model": "128x128", "num_workers": 0, "framework": "torch"}
    assert point_from_config(study, config).model.hidden == (128, 128)
    # The study travels to trials as JSON and comes back equal.
    assert parse_study(study.model_dump(mode="json")) == study


@pytest.mark.parametrize("mode", ["grid", "optuna", "budget"])
def test_every_mode_comes_back_equal_from_its_json_form(mode: str) -> None:
    # Trials get the study as JSON, every key set: budget keys at their defaults must pass.
    data = BUDGET_STUDY if mode == "budget" else {**BUDGET_STUDY, "search": {"mode": mode}}
    if mode != "budget":
        data = {**data, "factors": {**data["factors"], "model": ["64,64"]}}
    study = parse_study(data)
    assert parse_study(study.model_dump(mode="json")) == study
    if mode == "budget":
        grid = grid_comparison_study(study)
        assert parse_study(grid.model_dump(mode="json")) == grid


def test_a_weighted_combination_searches_the_product_ordered_by_score() -> None:
    data = with_search(
        maximize={"replay_capacity": 1, "num_workers": 10000}, subject_to={"model": "64,64"}
    )
    data["factors"] = {**data["factors"], "replay_capacity": [1000, 5000], "num_workers": [0, 1]}
    study = parse_study(data)
    scores = [study.budget_score(p) for p in study.budget_candidates()]
    assert scores == [1000, 5000, 11000, 15000]


@pytest.mark.parametrize(
    ("change", "names"),
    [
        ({"budget": None}, ["budget", "16GB"]),
        ({"maximize": None}, ["maximize", "replay_capacity"]),
        ({"maximize": "model"}, ["search.maximize", "'model'", "num_workers"]),
        ({"maximize": {"replay_capacity": 0}}, ["search.maximize", "replay_capacity", "> 0"]),
        ({"budget": "lots"}, ["search.budget", "'lots'", "16GB"]),
        ({"subject_to": {}}, ["search.subject_to", "factors.model", "64x64"]),
        (
            {"subject_to": {"model": "64", "num_workrs": 1}},
            ["search.subject_to", "'num_workrs'", "Did you mean 'num_workers'"],
        ),
        ({"subject_to": {"model": "64", "num_workers": -1}}, ["subject_to.num_workers", "-1"]),
        ({"subject_to": {"model": "64", "framework": "jax"}}, ["subject_to.framework", "'jax'"]),
        (
            {"subject_to": {"model": "64", "replay_capacity": 10}},
            ["subject_to.replay_capacity", "maximised"],
        ),
    ],
)
def test_a_bad_budget_search_is_refused_in_one_line_naming_the_key(
    change: dict[str, Any], names: list[str]
) -> None:
    data = with_search(**change)
    data["search"] = {k: v for k, v in data["search"].items() if v is not None}
    with pytest.raises(SpecError) as error:
        parse_study(data)
    message = str(error.value)
    assert "\n" not in message
    for name in names:
        assert name in message


def test_a_maximised_factor_needs_two_values_and_budget_keys_need_budget_mode() -> None:
    data = dict(BUDGET_STUDY)
    data["factors"] = {**data["factors"], "replay_capacity": [1000]}
    with pytest.raises(SpecError, match=r"factors\.replay_capacity.*\[1000\]"):
        parse_study(data)
    with pytest.raises(SpecError, match="budget, maximize apply to mode: budget only"):
        parse_study({**BUDGET_STUDY, "search": {"budget": "1GB", "maximize": "replay_capacity"}})
    with pytest.raises(SpecError, match="max_trials applies to mode: budget only"):
        parse_study({**BUDGET_STUDY, "search": {"mode": "optuna", "max_trials": 3}})
    with pytest.raises(SpecError, match="repeats: 1"):
        parse_study({**BUDGET_STUDY, "repeats": 2})


def test_validate_explains_the_budget_keys_and_shows_the_candidates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    assert any(line.startswith("  budget = None") for line in describe_fields())
    sweep = tmp_path / "b.yaml"
    sweep.write_text(yaml.safe_dump(BUDGET_STUDY))
    assert main(["validate", str(sweep)]) == 0
    out = capsys.readouterr().out
    assert "budget 1.20 GB" in out and "maximise replay_capacity" in out
    assert "6 trials" in out and "32000" in out


def test_as_grid_needs_a_budget_search_and_a_budget_search_cannot_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"name": "g", "stop": {"iterations": 1}}))
    assert main(["run", str(grid), "--as-grid"]) == 2
    assert "--as-grid runs the plain grid of a budget search" in capsys.readouterr().err
    budget = tmp_path / "b.yaml"
    budget.write_text(yaml.safe_dump({**BUDGET_STUDY, "storage": str(tmp_path / "r")}))
    assert main(["run", str(budget), "--resume"]) == 2
    assert "cannot resume" in capsys.readouterr().err


def test_the_grid_comparison_runs_every_candidate_with_the_budget_as_memory_budget() -> None:
    study = parse_study(BUDGET_STUDY)
    grid = grid_comparison_study(study)
    assert grid.search.mode == "grid"
    assert grid.points() == study.points()
    assert grid.resources.memory_budget == study.search.budget
    assert grid.storage_uri == f"{study.storage_uri}-grid"
    # The grid's answer: the largest capacity whose trial ended under the budget.
    rows = [
        {"trial_id": f"t{c}", "replay_capacity": c, "status": s, "peak_bytes": p, "started_at": i}
        for i, (c, s, p) in enumerate(
            [
                (1000, "terminated", 0.8e9),
                (2000, "terminated", 0.9e9),
                (4000, "terminated", 1.3e9),
                (8000, "over_budget", 1.25e9),
            ]
        )
    ]
    report = grid_report(study, rows, minutes=1.0)
    assert report.answer == {"replay_capacity": 2000} and report.answer_trial == "t2000"
    assert [t["under"] for t in report.trials] == [True, True, False, False]


# -- projection and stopper ------------------------------------------------------------------


def test_a_linear_fill_projects_to_the_full_buffer_and_never_below_the_peak() -> None:
    line = [TrajectoryPoint(size, 700_000_000 + 20_000 * size) for size in (0, 500, 1000, 1500)]
    assert fill_slope(line) == pytest.approx(20_000)
    assert projected_peak(line, 10_000) == 700_000_000 + 20_000 * 10_000
    # Too few points for a slope, a full buffer, a shrinking peak: the peak itself.
    assert projected_peak(line[:2], 10_000) == line[1].peak_bytes
    assert projected_peak(line, 1500) == line[-1].peak_bytes
    falling = [TrajectoryPoint(s, 900 - s) for s in (100, 200, 300)]
    assert projected_peak(falling, 1000) == falling[-1].peak_bytes
    assert projected_peak([], 10) == 0


def result(
    peak: float, projected: float, size: int, steps: int, capacity: int = 10_000
) -> dict[str, Any]:
    return {
        "memory/peak_bytes": int(peak),
        "memory/projected_peak_bytes": int(projected),
        "memsweep/replay_size": size,
        "memsweep/built_replay_capacity": capacity,
        "memsweep/env_steps": steps,
        "training_iteration": 1,
    }


def test_the_stopper_stops_a_trial_known_to_exceed_and_one_whose_buffer_is_full() -> None:
    state = BudgetState(budget_bytes=1_000_000_000)
    stopper = BudgetStopper(state)
    # A projection over the budget before 20% of the buffer is filled is not trusted yet.
    assert not stopper("a", result(0.8e9, 1.5e9, 1000, 1000))
    assert stopper("a", result(0.8e9, 1.5e9, 2500, 2500))
    assert state.stops["a"].reason == "projected"
    assert stopper("b", result(1.1e9, 1.1e9, 100, 100))
    assert state.stops["b"].reason == "measured"
    # Under the budget: runs until its buffer has been full for three results.
    decisions = [
        stopper("c", result(0.9e9, 0.9e9, 9900, steps)) for steps in (9000, 10000, 11000, 12000)
    ]
    assert decisions == [False, False, False, True]
    assert state.stops["c"].reason == "buffer_full"
    # The grid's stopper keeps only the buffer-full rule.
    assert not BudgetStopper(state, projection=False)("d", result(2e9, 2e9, 5000, 5000))


# -- proposals ---------------------------------------------------------------------------------


def linear_truth(capacity: float, baseline: float = 0.7e9, per_item: float = 40_000) -> float:
    return baseline + per_item * capacity


def search_with_plan(
    candidates: list[int], budget: float, truth: Any
) -> tuple[int | None, list[int]]:
    """Drive :func:`plan` with exact evidence; the answer and the candidates tried."""
    seen: dict[int, Observation] = {}
    tried: list[int] = []
    points = [(c,) for c in candidates]
    while True:
        proposal = plan(points, seen, budget)
        if proposal.done:
            answer = proposal.answer_index
            return (None if answer is None else candidates[answer]), tried
        index = proposal.next_index
        assert index is not None and index not in seen
        tried.append(candidates[index])
        peak = truth(candidates[index])
        seen[index] = Observation("under" if peak <= budget else "over", peak)


def test_the_first_proposals_are_the_smallest_then_the_middle_candidate() -> None:
    points = [(c,) for c in CAPACITIES]
    assert plan(points, {}, 1e9).next_index == 0
    assert plan(points, {0: Observation("under", 0.7e9)}, 1e9).next_index == 3


def test_the_search_ends_when_the_next_larger_step_exceeds_with_fewer_trials_than_the_grid() -> (
    None
):
    budget = 1.2e9  # 8000 → 1.02 GB fits, 16000 → 1.34 GB does not.
    answer, tried = search_with_plan(CAPACITIES, budget, linear_truth)
    assert answer == 8000
    assert 16000 in tried and len(tried) < len(CAPACITIES)


def test_no_answer_when_the_smallest_candidate_is_already_over() -> None:
    answer, tried = search_with_plan(CAPACITIES, 0.5e9, linear_truth)
    assert answer is None and tried == [1000]


def test_a_failed_trial_is_not_an_answer_and_not_retried() -> None:
    points = [(c,) for c in CAPACITIES]
    seen = {0: Observation("under", 0.74e9), 3: Observation("failed")}
    proposal = plan(points, seen, 1.2e9)
    assert proposal.next_index not in seen
    seen = {0: Observation("under", 0.74e9), 1: Observation("failed"), 2: Observation("over", 2e9)}
    final = plan(points, seen, 1.2e9)
    assert final.done and final.answer_index == 0
    assert "exceeded or failed" in final.reason


def test_with_two_factors_a_candidate_larger_in_both_than_one_over_is_never_tried() -> None:
    points = [(1000, 0), (5000, 0), (1000, 1), (5000, 1)]
    seen = {0: Observation("under", 0.8e9), 2: Observation("over", 1.5e9)}
    proposal = plan(points, seen, 1e9)
    assert proposal.next_index == 1  # (5000, 1) dominates (1000, 1), which exceeded.
    seen[1] = Observation("under", 0.9e9)
    assert plan(points, seen, 1e9).done


@settings(max_examples=200, deadline=None)
@given(
    baseline=st.floats(0.2e9, 2e9),
    per_item=st.floats(1_000, 200_000),
    levels=st.integers(2, 10),
    where=st.floats(0.0, 1.0),
)
def test_with_exact_evidence_the_answer_is_the_largest_candidate_that_fits(
    baseline: float, per_item: float, levels: int, where: float
) -> None:
    candidates = [1000 * 2**i for i in range(levels)]
    peaks = [baseline + per_item * c for c in candidates]
    budget = peaks[0] + where * (peaks[-1] - peaks[0]) * 1.2
    answer, tried = search_with_plan(candidates, budget, lambda c: baseline + per_item * c)
    fitting = [c for c, p in zip(candidates, peaks, strict=True) if p <= budget]
    assert answer == (max(fitting) if fitting else None)
    assert len(tried) == len(set(tried)) <= len(candidates)
    if answer is not None and answer != candidates[-1]:
        assert candidates[candidates.index(answer) + 1] in tried


def test_the_sampler_drives_a_real_optuna_study_to_the_answer() -> None:
    # GIVEN Optuna with the budget sampler and the search space Tune gives it
    budget = 1.2e9
    sampler = BudgetSampler(["replay_capacity"], [(c,) for c in CAPACITIES], int(budget))
    study = optuna.create_study(direction="minimize", sampler=sampler)
    space = {"replay_capacity": CategoricalDistribution(CAPACITIES)}
    tried = []
    # WHEN trials are asked for and told their (projected) peaks until the plan is done
    while not sampler.plan(study).done:
        trial = study.ask(fixed_distributions=space)
        capacity = trial.params["replay_capacity"]
        tried.append(capacity)
        for step, share in enumerate((0.25, 0.5, 1.0)):
            trial.report(linear_truth(capacity * share), step)
        study.tell(trial, linear_truth(capacity))
        assert len(tried) <= len(CAPACITIES)
    # THEN it found the largest capacity under the budget, with fewer trials than the grid
    final = sampler.plan(study)
    assert final.answer_index is not None and CAPACITIES[final.answer_index] == 8000
    assert tried[:2] == [1000, 8000] and 16000 in tried
    assert len(tried) < len(CAPACITIES)


def test_a_trial_stopped_for_its_projection_counts_as_over_even_with_a_low_peak() -> None:
    sampler = BudgetSampler(["replay_capacity"], [(c,) for c in CAPACITIES], int(1.2e9))
    study = optuna.create_study(direction="minimize", sampler=sampler)
    space = {"replay_capacity": CategoricalDistribution(CAPACITIES)}
    trial = study.ask(fixed_distributions=space)
    trial.set_user_attr("stop_reason", "projected")
    study.tell(trial, 1.0e9)
    assert sampler.observations(study)[0].verdict == "over"
    assert sampler.plan(study).done


# -- real Ray ---------------------------------------------------------------------------------

SMALL_SEARCH: dict[str, Any] = {
    "name": "budget-e2e",
    "algorithm": "DQN",
    # 32 KiB observations: each stored transition costs ~40 kB, so one doubling of the
    # capacity moves the peak by far more than a trial's start-up noise (~70 MB).
    "env": {"id": "memsweep/Synthetic-v0", "obs_shape": [8192], "obs_dtype": "float32"},
    "factors": {
        "replay_capacity": CAPACITIES,
        "model": ["64,64"],
        "num_workers": [0],
        "framework": ["torch"],
    },
    "stop": {"env_steps": 40000, "seconds": 150},
    "training": {"learning_starts": 500, "training_intensity": 0.05, "num_envs_per_env_runner": 4},
    "sampling": {"flush_interval_s": 2.0},
}


@pytest.mark.slow
def test_a_budget_search_confirms_a_capacity_whose_next_step_exceeds(
    local_ray: object, tmp_path: Path
) -> None:
    from memsweep.budget.app import run_budget
    from memsweep.store import open_results

    # GIVEN a budget a little above the smallest candidate's peak: any answer between the
    # smallest and the largest candidate will do, the search must prove it
    study = parse_study(
        {
            **SMALL_SEARCH,
            "search": {"mode": "budget", "budget": "1.2GB", "maximize": "replay_capacity"},
            "storage": str(tmp_path / "search"),
        }
    )
    budget = study.search.budget
    assert budget is not None
    # WHEN the search runs on real Ray
    outcome = run_budget(study)
    report = json.loads((tmp_path / "search" / "budget.json").read_text())
    assert outcome.report is not None and "answer" in outcome.report
    # THEN its answer's confirming trial stayed under the budget
    answer = report["answer"]
    assert report["confirmed"], report["conclusion"]
    assert answer is not None and answer["peak_bytes"] <= budget
    assert answer["verdict"] == "under" and not answer["error"]
    # AND the next larger step exceeded it, measured or projected
    step = report["next_step_trial"]
    assert step is not None, report["conclusion"]
    assert step["point"]["replay_capacity"] > answer["point"]["replay_capacity"]
    assert max(step["peak_bytes"], step["projected_bytes"]) > budget
    # AND stopped early: before its stop limit, once its trajectory was known
    assert step["stop_reason"] in ("measured", "projected")
    assert step["env_steps"] < study.stop.env_steps
    # AND fewer trials ran than the grid over the same range has points
    assert len(report["trials"]) < report["grid_points"] == len(CAPACITIES)
    # AND the trials table records them, as any sweep's
    trials = open_results(tmp_path / "search").table("trials").to_pylist()
    assert {t["trial_id"] for t in trials} == {t["trial_id"] for t in report["trials"]}


def drive_search(study_data: dict[str, Any], truth: Any) -> tuple[Any, list[int]]:
    """Run a budget study's Tune searcher and stopper in this process, without Ray: each
    suggested trial reports a filling buffer whose peak follows ``truth``."""
    from ray.tune.search import Searcher

    from memsweep.budget.report import budget_report
    from memsweep.budget.search import make_search
    from memsweep.run.sweep import param_space

    study = parse_study(study_data)
    search, stopper, _ = make_search(study)
    assert search.set_search_properties(None, None, param_space(study))
    tried: list[int] = []
    for number in range(study.search.max_trials):
        trial_id = f"t{number}"
        config = search.suggest(trial_id)
        if config == Searcher.FINISHED:
            break
        assert config is not None
        capacity = int(config["replay_capacity"])
        tried.append(capacity)
        last: dict[str, Any] = {}
        for iteration, steps in enumerate(range(capacity // 10, 2 * capacity, capacity // 10)):
            stored = min(steps, capacity)
            peak = truth(stored)
            last = {
                **result(peak, peak + 40_000 * (capacity - stored), stored, steps, capacity),
                "training_iteration": iteration + 1,
                "time_total_s": float(iteration),
            }
            if stopper(trial_id, last):
                break
            search.on_trial_result(trial_id, last)
        search.on_trial_complete(trial_id, result=last)
    return budget_report(study, search, minutes=0.5), tried


def test_the_tune_searcher_finishes_with_a_confirmed_answer_and_its_evidence() -> None:
    report, tried = drive_search(BUDGET_STUDY, linear_truth)
    # 8000 → 1.02 GB fits the 1.2 GB budget; 16000 → 1.34 GB does not
    assert report.confirmed and report.answer is not None
    assert report.answer.point == {"replay_capacity": 8000}
    assert report.answer.peak_bytes <= 1.2e9 and report.answer.stop_reason == "buffer_full"
    step = report.next_step_trial
    assert step is not None and step.point == {"replay_capacity": 16000}
    assert step.stop_reason == "projected" and step.fill < 1
    assert len(report.trials) == len(tried) < report.grid_points
    assert [t.point["replay_capacity"] for t in report.trials] == tried
    assert "confirmed: the next larger step exceeds the budget" in report.text()
    assert json.loads(report.as_json())["answer"]["trial_id"] == report.answer.trial_id


def test_a_search_cut_short_by_max_trials_says_its_answer_is_not_confirmed() -> None:
    report, tried = drive_search(with_search(max_trials=2), linear_truth)
    assert tried == [1000, 8000]
    assert not report.confirmed
    assert "not confirmed: max_trials (2) reached" in report.conclusion


def test_a_budget_below_the_smallest_candidate_has_no_answer_and_says_so() -> None:
    report, tried = drive_search(with_search(budget="0.5GB"), linear_truth)
    assert tried == [1000] and report.answer is None and not report.confirmed
    assert "no answer: the smallest candidate is already over the budget" in report.text()

"""Numbers that hold (issue #13 items 1, 5, 6; #14 item 1): every factor that can be fitted
is, figures are coherent, the buffer's cost is its own, and any factor is fitted and
predicted like the built-in ones."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from memsweep.analyze import analyze_results
from memsweep.analyze.buffer_cost import buffer_cost
from memsweep.analyze.models import fit_all
from memsweep.analyze.prediction import PredictPoint, predict
from memsweep.report.document import summary_text, write_report
from memsweep.report.headline import effect_text
from memsweep.store import ResultsWriter, open_results
from memsweep.testing.synthetic import SynthTrial, Truth, label_params, write_sweep
from memsweep.units import Estimate

REPO = Path(__file__).resolve().parents[2]
INTERACTION = REPO / "results" / "claims-2cpu-24gb" / "interaction"


def _rewrite_trials(folder: Path, edit) -> None:  # type: ignore[no-untyped-def]
    rows = open_results(folder).table("trials").to_pylist()
    ResultsWriter(folder).replace("trials", [r for r in map(edit, rows) if r is not None])


def test_a_lost_trial_still_leaves_every_factor_of_a_committed_run(tmp_path: Path) -> None:
    # GIVEN the committed 2 × 2 × 2 interaction sweep with one trial lost
    folder = tmp_path / "interaction"
    shutil.copytree(INTERACTION, folder, ignore=shutil.ignore_patterns("analysis"))
    lost = open_results(folder).table("trials").column("trial_id").to_pylist()[3]
    _rewrite_trials(folder, lambda row: None if row["trial_id"] == lost else row)
    # WHEN analysed
    analysis = analyze_results(folder)
    # THEN every factor the 7 remaining trials vary is fitted, each with an interval
    model = analysis.models.get("plateau")
    assert model is not None and model.n_trials == 7
    assert set(model.formula.factors) >= {"replay_capacity", "num_workers", "framework"}
    for name in ("bytes_per_transition", "bytes_per_worker", "framework_offset[tf2]"):
        effect = model.effect(name)
        assert effect is not None and effect.estimate.low <= effect.estimate.value
    assert not analysis.models.errors


def test_with_no_residual_freedom_one_factor_is_left_out_and_named() -> None:
    # GIVEN a one-at-a-time subset of the committed interaction sweep: a base trial and
    # each factor moved alone, 4 trials for 4 terms (no degree of freedom left)
    table = analyze_results(INTERACTION).trial_table
    base = table.iloc[0]
    factors = ("replay_capacity", "num_workers", "framework")
    chosen = [table.index[0]]
    for factor in factors:
        others = [f for f in factors if f != factor]
        moved = table[
            (table[factor] != base[factor])
            & np.logical_and.reduce([table[f] == base[f] for f in others])
        ]
        chosen.append(moved.index[0])
    # WHEN fitted
    models = fit_all(table.loc[chosen], ("trainable", "env_runner"), factors=factors)
    # THEN the others are fitted with an interval, and the missing one is named with why
    # (a cost fixed at 0 by the non-negativity constraint still counts as fitted)
    model = models.get("plateau")
    assert model is not None and len(model.formula.factors) + len(model.zero_effects) == 2
    (missing,) = [f for f in factors if any(n.startswith(f"{f} not fitted") for n in models.errors)]
    assert any(
        e.startswith(f"{missing} not fitted") and "cannot fit 4 terms" in e for e in models.errors
    )
    assert model.n_trials - len(model.coefficients) >= 1


def test_a_cost_whose_interval_holds_zero_is_never_printed_signed() -> None:
    text = effect_text(Estimate(7_984, -8_692, 24_661), "bytes per transition", 0.95)
    assert text == "not distinguishable from 0 (|x| < 24,661) bytes per transition"
    assert "-" not in effect_text(Estimate(-5e6, -9e6, 3e6), "bytes vs torch", 0.95)


def test_a_trial_with_no_factor_values_is_analysed_and_reported(tmp_path: Path) -> None:
    # GIVEN trials of a foreign trainable: no replay capacity, model, workers or framework
    trials = [SynthTrial(f"f{i}", 5_000, plateau_s=20) for i in range(3)]
    write_sweep(tmp_path / "foreign", trials, seed=5)

    def strip(row: dict) -> dict:  # type: ignore[type-arg]
        return {
            **row,
            **dict.fromkeys(("replay_capacity", "model", "num_workers", "framework"), None),
            **dict.fromkeys(("model_params", "built_replay_capacity"), None),
            "factors_json": "{}",
        }

    _rewrite_trials(tmp_path / "foreign", strip)
    # WHEN analysed and reported
    analysis = analyze_results(tmp_path / "foreign")
    files = write_report(analysis, tmp_path / "out")
    # THEN nothing crashes, and the trials are there with no factor columns
    assert analysis.data.factor_names == ()
    assert "f0" in files.markdown.read_text() and (tmp_path / "out" / "roles_stacked.png").exists()
    assert "no factor" in summary_text(analysis) or analysis.models.get("plateau") is not None


def _renamed_factor_sweep(root: Path) -> tuple[Path, Truth]:
    """Env runners varied, recorded only as a factor of the user's own name."""
    trials = [
        SynthTrial(f"w{w}_{r}", 5_000, num_workers=w, plateau_s=20)
        for w in (0, 1, 2, 3)
        for r in range(2)
    ]
    sweep = write_sweep(root, trials, seed=7)
    workers = {t.trial_id: t.num_workers for t in trials}
    _rewrite_trials(
        root,
        lambda row: {
            **row,
            "factors_json": json.dumps(
                {"evaluation_num_env_runners": workers[row["trial_id"]], "model": "256x256"}
            ),
        },
    )
    return root, sweep.truth


def test_a_factor_of_the_users_own_is_fitted_and_predicted(tmp_path: Path) -> None:
    # GIVEN a sweep whose only varied factor is a config key of the user's own
    folder, truth = _renamed_factor_sweep(tmp_path / "own")
    # WHEN analysed
    analysis = analyze_results(folder)
    # THEN its per-unit cost is the planted one (each env runner's memory)
    model = analysis.models.get("plateau")
    assert model is not None
    effect = model.effect("bytes_per_unit[evaluation_num_env_runners]")
    planted = truth.per_worker_bytes(label_params("256x256"), "torch") + 0.0
    assert effect is not None and effect.estimate.contains(planted)
    # AND predict takes it by --set, at a value beyond the sweep
    prediction = predict(analysis, PredictPoint(settings=(("evaluation_num_env_runners", 8.0),)))
    assert prediction.total.plateau.value > 0 and any(
        "extrapolating" in w for w in prediction.warnings
    )
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "memsweep",
            "analyze",
            "predict",
            str(folder),
            "--set",
            "evaluation_num_env_runners=8",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "evaluation_num_env_runners=8" in run.stdout
    unknown = subprocess.run(
        [sys.executable, "-m", "memsweep", "analyze", "predict", str(folder), "--set", "nope=1"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert unknown.returncode != 0 and "not a factor of this sweep" in unknown.stderr
    assert "Traceback" not in unknown.stderr


def _fill(warmup_scale: float, n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    stored = np.linspace(0, 30_000, n)
    rng = np.random.default_rng(0)
    warm = 300e6 * (1 - np.exp(-stored / warmup_scale))
    return 1e9 + 8_000 * stored + warm + rng.normal(0, 2e6, n), stored


def test_the_buffer_cost_excludes_a_warm_up_that_ends_early() -> None:
    # GIVEN a fill whose first tenth carries 300 MB of warm-up on top of 8,000 B/transition
    y, stored = _fill(warmup_scale=2_000)
    plain = np.polyfit(stored, y, 1)[0]
    # WHEN the buffer's cost is separated (no growth left after the fill)
    cost, note = buffer_cost(y, stored, Estimate(0.0, -1.0, 1.0), 30_000, 0.95)
    # THEN the plain fill slope is far off and the separated cost holds the truth
    assert plain > 1.4 * 8_000
    assert cost is not None and cost.contains(8_000), note


def test_memory_that_fell_after_the_fill_is_added_back_and_said_so() -> None:
    # GIVEN a fill of 8,000 B/transition, and memory falling 1 MB per 1k env steps after it
    y, stored = _fill(warmup_scale=2_000)
    cost, note = buffer_cost(y, stored, Estimate(-1e6, -1.1e6, -0.9e6), 30_000, 0.95)
    # THEN the fall is added back, and the note says so in words, not "minus -1,000"
    assert cost is not None and cost.value > 8_500
    assert "plus 1,000 B per env step by which memory fell" in note and "minus -" not in note


def test_a_warm_up_lasting_the_whole_fill_is_said_not_separable() -> None:
    y, stored = _fill(warmup_scale=40_000)
    cost, note = buffer_cost(y, stored, Estimate(0.0, -1.0, 1.0), 30_000, 0.95)
    assert cost is None and "still falling" in note and "upper bound" in note
    unfilled, why = buffer_cost(*_fill(warmup_scale=2_000), None, 30_000, 0.95, filled=False)
    assert unfilled is None and "never filled" in why


@pytest.mark.parametrize("seed", [0])
def test_role_and_total_figures_of_a_trial_are_ordered(tmp_path: Path, seed: int) -> None:
    sweep = write_sweep(
        tmp_path / "s", [SynthTrial(f"t{c}", c, plateau_s=20) for c in (2_000, 8_000)], seed=seed
    )
    analysis = analyze_results(sweep.path)
    for trial in analysis.trials:
        for role in trial.roles:
            if role.baseline and role.plateau:
                assert role.baseline.value <= role.plateau.value
            if role.plateau and role.peak_bytes is not None:
                assert role.plateau.value <= role.peak_bytes

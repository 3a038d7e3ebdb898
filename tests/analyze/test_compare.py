"""``memsweep compare``: a run against itself, a planted difference recovered within its
interval, unmatched trials listed; on a committed real sweep and on synthetic runs."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from memsweep.analyze.analysis import analyze_results
from memsweep.analyze.compare import compare_analyses
from memsweep.cli.main import main
from memsweep.report.compare import comparison_text
from memsweep.testing.synthetic import SynthTrial, Truth, write_sweep

REPO = Path(__file__).resolve().parents[2]
CLAIMS = REPO / "results" / "claims-2cpu-24gb"
PLANTED_BYTES = 60e6
"""Added to the trainable's base memory in run B."""


@pytest.mark.skipif(not (CLAIMS / "workers").is_dir(), reason="no committed claims run")
def test_a_real_sweep_against_itself_differs_by_nothing() -> None:
    # GIVEN a committed real sweep, analysed twice
    a = analyze_results(CLAIMS / "workers")
    b = analyze_results(CLAIMS / "workers")
    # WHEN compared
    comparison = compare_analyses(a, b)
    # THEN every trial is paired with itself, every role compared, every interval holds 0
    assert len(comparison.pairs) == len(a.trials) and not comparison.unmatched
    assert all(ta == tb for ta, tb, _ in comparison.pairs)
    assert {r.role for r in comparison.matched} >= {"trainable", "env_runner", "total"}
    figures = [d for r in comparison.matched for d in r.differences if d.difference]
    assert {d.quantity for d in figures} == {"plateau", "peak", "bytes_per_transition", "growth"}
    for d in figures:
        assert d.difference is not None and d.difference.contains(0.0), d
        assert not d.differs
    with_interval = [d for d in figures if d.has_interval and d.difference]
    assert all(d.difference.high > d.difference.low for d in with_interval if d.difference)


@pytest.mark.skipif(not (CLAIMS / "interaction").is_dir(), reason="no committed claims run")
def test_unmatched_trials_are_listed_not_dropped(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN two real sweeps with no factor setting in common (capacities 10k vs 5k/20k)
    # WHEN compared through the command line
    code = main(["compare", str(CLAIMS / "workers"), str(CLAIMS / "interaction"), "--json"])
    # THEN no pair, and every trial of both runs is listed with its values
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["pairs"] == []
    runs = sorted((u["run"], u["trial_id"]) for u in out["unmatched"])
    assert len([r for r in runs if r[0] == "A"]) == 4
    assert len([r for r in runs if r[0] == "B"]) == 8
    assert all("replay_capacity" in u["factors"] for u in out["unmatched"])
    # AND none is said to have a partner setting in the other run, and the note says why
    assert not any(u["other_has_fewer"] for u in out["unmatched"])
    assert any(n.startswith("no trial of A has the values of a trial of B") for n in out["notes"])


def test_a_setting_run_fewer_times_in_the_other_run_is_said_to_be_so() -> None:
    # GIVEN the default study and the same file run under load, where one trial was lost
    a, b = (
        analyze_results(REPO / "results" / n) for n in ("reference-default", "reference-loaded")
    )
    comparison = compare_analyses(a, b)
    # THEN a trial left over because B ran its setting fewer times is said to be so, and
    # a trial of A with those values is paired
    fewer = [u for u in comparison.unmatched if u.other_has_fewer]
    assert fewer, comparison.unmatched
    for unmatched in fewer:
        assert any(key == unmatched.factors for _, _, key in comparison.pairs), unmatched
    # AND an env runner gets no per-transition figure: it holds no buffer
    runners = [r for r in comparison.matched if r.role == "env_runner"]
    assert runners and all(r.get("bytes_per_transition").a is None for r in runners)


def test_a_planted_difference_is_recovered_within_its_interval(tmp_path: Path) -> None:
    # GIVEN two synthetic runs of the same design, B's trainable 60 MB larger, and one
    # trial only B has
    trials = [SynthTrial(f"c{cap}", cap, steps_per_s=250, plateau_s=30) for cap in (5_000, 10_000)]
    truth = Truth(trial_sd_bytes=0.0)
    bigger = replace(truth, trainable_base_bytes=truth.trainable_base_bytes + PLANTED_BYTES)
    extra = SynthTrial("extra", 5_000, num_workers=1, steps_per_s=250, plateau_s=30)
    a = analyze_results(write_sweep(tmp_path / "a", trials, truth=truth, seed=1).path)
    b = analyze_results(write_sweep(tmp_path / "b", [*trials, extra], truth=bigger, seed=2).path)
    # WHEN compared
    comparison = compare_analyses(a, b)
    # THEN the trainable's and the total's plateau differ by the planted amount, inside the
    # interval that excludes 0; the env runners' do not differ; the extra trial is listed
    assert [(ta, tb) for ta, tb, _ in comparison.pairs] == [
        ("c5000", "c5000"),
        ("c10000", "c10000"),
    ]
    for role in comparison.matched:
        plateau = role.get("plateau").difference
        assert plateau is not None
        if role.role in ("trainable", "total"):
            assert plateau.contains(PLANTED_BYTES), (role.role, plateau)
            assert role.get("plateau").differs
        else:
            assert plateau.contains(0.0), (role.role, plateau)
        bpt = role.get("bytes_per_transition").difference
        if role.role in ("trainable", "total"):  # where RLlib keeps the buffer, and in all
            assert bpt is not None and bpt.contains(0.0), (role.role, bpt)
        else:  # an env runner holds no buffer: its slope against the fill is no cost of it
            assert bpt is None and role.get("bytes_per_transition").a is None, role.role
    assert [(u.run, u.trial_id) for u in comparison.unmatched] == [("B", "extra")]
    text = comparison_text(comparison)
    assert "run B extra" in text and "*" in text


def test_a_missing_folder_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["compare", str(tmp_path / "nope"), str(tmp_path / "nope2")])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and "nope" in err

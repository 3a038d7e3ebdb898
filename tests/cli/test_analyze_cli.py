"""``python -m memsweep.analyze`` as a user runs it: report files, predict, bad input."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from memsweep.analyze.__main__ import main
from memsweep.report.document import summary_text, write_report
from memsweep.store import ResultsWriter
from memsweep.testing.raycluster import analyze as run
from memsweep.testing.synthetic import (
    SynthTrial,
    analysis_of,
    capacity_sweep,
    factorial_sweep,
    leak_sweep,
    write_sweep,
)


def assert_one_line_error(
    result: subprocess.CompletedProcess[str], *, code: int, says: str
) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("memsweep analyze: ")
    assert says in lines[0], lines[0]


def test_the_report_writes_markdown_html_plots_and_models_json(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # GIVEN a sweep with leaks, a trial still filling and one that crashed
    sweep = leak_sweep(tmp_path_factory.getbasetemp())
    out = tmp_path / "analysis"
    # WHEN the user runs the analysis
    result = run(sweep.path, "--out", out, cwd=tmp_path)
    # THEN it succeeds and prints a short summary with the buffer cost and the leaks
    assert result.returncode == 0, result.stderr
    assert "replay buffer: " in result.stdout and "bytes per transition" in result.stdout
    assert "growth: 0 trial(s) with sustained growth" in result.stdout
    assert "missing (1): trial crashed" in result.stdout
    assert len(result.stdout.splitlines()) < 25
    # AND writes the report files
    markdown = (out / "report.md").read_text()
    assert "## Answers" in markdown and "never reached its plateau" in markdown
    assert (
        "trial crashed (error: RayOutOfMemoryError: worker killed) has no memory samples"
        in markdown
    )
    assert "num_workers has a single value (2)" in markdown
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert {
        "memory_over_steps.png",
        "peak_vs_factors.png",
        "roles_stacked.png",
        "drift_rates.png",
    } <= set(pngs)
    for png in pngs:
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({png})" in markdown
    # AND the HTML page stands alone: images inlined, nothing fetched
    page = (out / "report.html").read_text()
    assert page.count("src='data:image/png;base64,") == len(pngs)
    assert not re.search(r"src=['\"](?!data:)|href=|<script|<link", page)
    # AND Markdown's bold (the growth rule's verdict names) is bold there, not asterisks
    assert "**" in markdown and "**" not in page and "<strong>" in page


def test_models_json_holds_every_coefficient_with_its_interval(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # GIVEN the analysis of a sweep over all four factors
    analysis = analysis_of(factorial_sweep(tmp_path_factory.getbasetemp()))
    # WHEN its report is written
    files = write_report(analysis, tmp_path)
    # THEN models.json holds every coefficient and effect with its interval
    document = json.loads(files.models_json.read_text())
    plateau = document["models"]["plateau"]
    terms = {c["term"] for c in plateau["coefficients"]}
    assert {"const", "replay_capacity", "model_params", "num_workers", "framework[tf2]"} <= terms
    for model in document["models"].values():
        for coefficient in model["coefficients"] + model["effects"]:
            assert coefficient["ci_low"] <= coefficient["estimate"] <= coefficient["ci_high"]
        assert model["loo_rmse_bytes"] > 0 and 0 <= model["r2"] <= 1
    assert {"plateau[trainable]", "plateau[env_runner]", "peak"} <= set(document["models"])
    assert len(document["trials"]) == 54
    assert document["trials"][0]["roles"]["total"]["verdict"]["verdict"] != "sustained growth"
    # AND the summary gives the three costs with intervals
    summary = summary_text(analysis, files)
    for cost in (
        "bytes per transition (95% CI",
        "per env runner (95% CI",
        "bytes per parameter (95% CI",
    ):
        assert cost in summary


def test_predict_prints_totals_per_role_with_intervals_and_warns_on_extrapolation(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # GIVEN a sweep that measured capacities up to 40 000 (one model, 2 workers, torch)
    sweep = capacity_sweep(tmp_path_factory.getbasetemp())
    # WHEN the user asks about a million transitions
    result = run(
        "predict",
        sweep.path,
        "--replay-capacity",
        "1000000",
        "--num-workers",
        "2",
        "--model",
        "256x256",
        "--framework",
        "torch",
        cwd=tmp_path,
    )
    # THEN plateau and peak come per role and in total, each with an interval
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    for role in ("trainable", "env_runner", "total"):
        size = r"[\d.]+ [kMG]?B"
        assert re.search(rf"{size}\s+{size} – {size}\s+{size}\s+{size} – {size}", rows[role])
    assert "total + ray + driver" in result.stdout
    # AND it warns that it extrapolates
    assert (
        "warning: extrapolating: replay_capacity 1,000,000 is above the measured range"
        in result.stdout
    )


def test_predict_with_a_budget_prints_the_largest_capacity_that_fits(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    sweep = capacity_sweep(tmp_path_factory.getbasetemp())
    result = run("predict", sweep.path, "--budget", "16GB", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    match = re.search(r"largest replay_capacity = ([\d,]+)", result.stdout)
    assert match, result.stdout
    capacity = int(match.group(1).replace(",", ""))
    # ≈ (16 GB − 1.5 GB baseline − 0.4 GB Ray) / 8300 B per transition, minus the interval
    assert 1_000_000 < capacity < 1_800_000
    assert f"replay_capacity={match.group(1)}" in result.stdout


def _empty(path: Path) -> Path:
    path.mkdir()
    return path


def _no_trials(path: Path) -> Path:
    ResultsWriter(path).replace("trials", [])
    return path


def _trials_without_samples(path: Path) -> Path:
    write_sweep(path, [SynthTrial("a", 1000, with_samples=False)])
    return path


def _samples_without_trials(path: Path) -> Path:
    write_sweep(path, [SynthTrial("a", 1000, duration_s=10)])
    (path / "trials.parquet").unlink()
    return path


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda p: p / "missing", "No such results folder"),
        (_empty, "is not a memsweep results folder"),
        (_no_trials, "empty dataset: trials.parquet lists no trials"),
        (_trials_without_samples, "partial dataset: 1 trial(s) but no samples/"),
        (_samples_without_trials, "partial dataset: no trials.parquet"),
    ],
    ids=["missing", "not-a-sweep", "empty", "no-samples", "no-trials"],
)
def test_a_folder_that_cannot_be_analysed_gets_one_line_and_exit_3(
    tmp_path: Path, make, says: str
) -> None:  # type: ignore[no-untyped-def]
    folder = make(tmp_path / "sweep")
    assert_one_line_error(run(folder, cwd=tmp_path), code=3, says=says)


@pytest.mark.parametrize(
    ("flags", "code", "says"),
    [
        (["--budget", "64XB"], 2, "--budget: Invalid memory size format: '64XB'"),
        (["--num-workers", "eight"], 2, "--num-workers: expected a whole number"),
        (["--replay-capacity", "-5"], 2, "--replay-capacity"),
        (["--framework", "jax"], 2, "--framework: expected torch, tf2 or tf2-eager, got 'jax'"),
        (["--confidence", "2"], 2, "--confidence must be in [0.5, 1)"),
        (["--no-such-flag"], 2, "unrecognized arguments: --no-such-flag"),
        (
            ["--num-workers", "8", "--replay-capacity", "10000"],
            2,
            "num_workers has a single value (2)",
        ),
        (
            ["--replay-capacity", "10000", "--budget", "64GB", "--solve-for", "num_workers"],
            2,
            "cannot solve for num_workers",
        ),
        (["--solve-for", "num_workers"], 2, "--solve-for num_workers answers a --budget"),
        (["--emit", "ray", "--budget", "8GB"], 2, "--emit and --budget: give one of them"),
    ],
    ids=[
        "budget",
        "workers",
        "negative",
        "framework",
        "confidence",
        "flag",
        "single-valued",
        "solve-single",
        "solve-without-budget",
        "emit-and-budget",
    ],
)
def test_a_bad_predict_request_gets_one_line_naming_the_problem(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, flags: list[str], code: int, says: str
) -> None:
    sweep = leak_sweep(tmp_path_factory.getbasetemp())
    assert_one_line_error(run("predict", sweep.path, *flags, cwd=tmp_path), code=code, says=says)


def test_a_sweep_still_running_is_analysed_as_far_as_it_goes(tmp_path: Path) -> None:
    # GIVEN a sweep with one finished trial, one running and one not started
    path = tmp_path / "running"
    write_sweep(
        path,
        [
            SynthTrial("done", 10_000, plateau_s=30),
            SynthTrial("done2", 20_000, plateau_s=30),
            SynthTrial("going", 500_000, duration_s=20, status="running"),
            SynthTrial("pending", 10_000, status="pending", with_samples=False),
        ],
    )
    # WHEN the user asks for the report (default subcommand and location)
    result = run(path, cwd=tmp_path)
    # THEN it works, and says what is running and what is missing
    assert result.returncode == 0, result.stderr
    assert "trial going is still running" in result.stdout
    assert "trial pending (pending) has no memory samples" in result.stdout
    markdown = (path / "analysis" / "report.md").read_text()
    assert "still running" in markdown and "extrapolated" in markdown


def test_main_returns_the_exit_code_instead_of_exiting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path / "nowhere")]) == 3
    assert capsys.readouterr().err.startswith("memsweep analyze: No such results folder")
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0


def test_a_sweep_on_s3_is_analysed_through_pyarrow_fs(
    tmp_path: Path, s3_uri: Callable[[str], str]
) -> None:
    # GIVEN a sweep written to an S3 bucket (moto's server on loopback)
    uri = s3_uri("leaky")
    trials = [
        SynthTrial(name, cap, plateau_s=30)
        for name, cap in (("a", 5000), ("b", 10_000), ("c", 20_000))
    ]
    write_sweep(uri, trials)
    # WHEN the report is asked for without a local output folder, then with one
    assert main([uri]) == 2
    assert main([uri, "--out", str(tmp_path / "out")]) == 0
    # THEN it reads the bucket and writes the report locally
    document = json.loads((tmp_path / "out" / "models.json").read_text())
    assert [t["trial_id"] for t in document["trials"]] == ["a", "b", "c"]
    assert document["models"]["plateau"]["n_trials"] == 3


def test_trials_without_a_buffer_stopped_soon_after_set_up_say_what_they_lacked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN three trials with no replay buffer (PPO-like) that ran seconds after set-up
    path = tmp_path / "nobuffer"
    write_sweep(path, [SynthTrial(f"p{i}", 0, duration_s=12) for i in range(3)])
    # WHEN the report is written
    assert main([str(path)]) == 0
    out = capsys.readouterr().out
    # THEN the summary blames no buffer, and each trial's note counts what it lacked
    assert "no trial reached a measured plateau" in out and "(a full buffer)" not in out
    report = (path / "analysis" / "report.md").read_text()
    assert report.count("too few samples after set-up to measure a plateau: 1 time bucket(s)") == 3
    assert "3 needed; run it longer (a larger stop.plateau_env_steps or stop.seconds)" in report


def test_a_sweep_whose_trials_failed_says_so_first_with_the_first_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a sweep whose every trial ended in error seconds after set-up, and one where
    # one trial of three did
    failed = tmp_path / "failed"
    write_sweep(
        failed,
        [SynthTrial(f"e{i}", 5000 * (i + 1), duration_s=8, status="error") for i in range(3)],
    )
    mixed = tmp_path / "mixed"
    write_sweep(
        mixed,
        [
            SynthTrial("ok", 5000),
            SynthTrial("bad", 10_000, status="error"),
            SynthTrial("ok2", 20_000),
        ],
    )
    # WHEN each is analysed
    assert main([str(failed)]) == 0
    out = capsys.readouterr().out.splitlines()
    # THEN the summary says every trial ended in error, naming the first and its error,
    # before any note on plateaus or buffers
    said = [i for i, line in enumerate(out) if line.startswith("  ended error: every trial (e0: ")]
    assert len(said) == 1, out
    assert all("plateau" not in line for line in out[1 : said[0]] if line.startswith("  note"))
    assert main([str(mixed)]) == 0
    assert "  ended error: 1 trial(s) (bad: " in capsys.readouterr().out
    # AND a sweep whose trials all ended normally has no such line
    clean = tmp_path / "clean"
    write_sweep(clean, [SynthTrial("ok", 5000, plateau_s=30)])
    assert main([str(clean)]) == 0
    assert "ended " not in capsys.readouterr().out


def test_a_sweep_whose_buffers_never_fill_reports_per_trial_and_refuses_to_predict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN three trials stopped long before their buffers were full
    path = tmp_path / "short"
    write_sweep(
        path, [SynthTrial(f"n{c}", c, duration_s=30) for c in (500_000, 1_000_000, 2_000_000)]
    )
    # WHEN the report is written
    assert main([str(path)]) == 0
    out = capsys.readouterr().out
    # THEN it says there is nothing to fit across trials and extrapolates each trial
    assert "no trial reached a measured plateau, so there is nothing to fit" in out
    assert "run the trials longer (stop.plateau_env_steps)" in out
    assert "(extrapolated)" in (path / "analysis" / "report.md").read_text()
    # AND predict says why it cannot answer
    assert main(["predict", str(path), "--replay-capacity", "1e6"]) == 3
    assert "no plateau model could be fitted for this sweep" in capsys.readouterr().err

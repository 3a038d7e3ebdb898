"""Refusals of the command line name the flag and the help that lists the right ones.

In-process (``main(argv)``), so each case costs milliseconds: argparse's own words are
kept where they are right and replaced where they mislead (a flag before any command, a
required argument missing beside an unknown flag, the top-level help named for a
subcommand's flags).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from memsweep.cli.main import main

REFERENCE = Path(__file__).resolve().parents[2] / "results" / "reference-default"
POINT = ["--replay-capacity", "12000", "--num-workers", "2", "--model", "256,256", "--framework"]


@pytest.mark.parametrize(
    ("argv", "code", "says"),
    [
        (["--bogus"], 2, "memsweep: unrecognized arguments: --bogus: the first word is a command"),
        (["run", "--bogus"], 2, "unrecognized arguments: --bogus; the following arguments"),
        # a flag another command has is still unknown to this one
        (["compact", "--json"], 2, "unrecognized arguments: --json; the following"),
        (["claims", "run", "--bogus"], 2, "(see memsweep claims run --help)"),
        (["claims", "table", "--bogus"], 2, "(see memsweep claims table --help)"),
        (["analyze", "predict", "x", "--bogus"], 2, "(see memsweep analyze predict --help)"),
        (["analyze", "x", "--bogus"], 2, "(see memsweep analyze report --help)"),
        (["analyze", "designs", "x", "--sizes", "4,x"], 2, "got 'x' in '4,x'"),
        (["analyze", "designs", "x", "--sizes", "x"], 2, "such as 4,5,6, got 'x'\n"),
        (["analyze", "predict", "x", "--solve-for", ""], 2, "--solve-for: give a numeric"),
        (["analyze", "predict", "x", "--solve-for", "num_workers"], 2, "answers a --budget"),
        (
            ["analyze", "predict", "x", "--emit", "ray", "--solve-for", "num_workers"],
            2,
            "goes with --budget (the largest value that fits it), not with --emit",
        ),
        (["analyze", "predict", "x", "--emit", "ray", "--budget", "8GB"], 2, "give one of them"),
        (["analyze", "predict", "x", "--margin", "0.5"], 2, "--margin goes with --emit ray"),
        (["analyze", "predict", "x", "--node-memory", "16GB"], 2, "--node-memory goes with"),
        (
            ["analyze", "predict", "x", "--budget", "-8GB"],
            2,
            "argument --budget: -8GB is negative: give a positive value (a word that starts "
            "with '-' reads as a flag) (see memsweep analyze predict --help)",
        ),
        # an abbreviated flag too; the size itself refused as negative, with = and without
        (["analyze", "predict", "x", "--bud", "-8GB"], 2, "argument --budget: -8GB is negative"),
        (["analyze", "predict", "x", "--budget=-1GB"], 2, "a size is not negative"),
        (["analyze", "predict", "x", "--budget", "-1"], 2, "a size is not negative"),
        # argparse took -0.9 as a value: what is missing is the last flag's value
        (
            ["analyze", "predict", "x", "--confidence", "-0.9", "--confidence"],
            2,
            "argument --confidence: expected one argument",
        ),
        (
            ["analyze", "--confidence", "0.9", "predict", "x"],
            2,
            "predict is a command: name it right after `memsweep analyze`, before any flag "
            "(see memsweep analyze predict --help)",
        ),
        (["analyze", "--conf", "0.9", "designs", "x"], 2, "designs is a command: name it"),
        (["analyze", "s3://", "--out", "o"], 3, "s3:// names no bucket: give s3://BUCKET/PATH"),
        (["analyze", ""], 3, "an empty path is not a results folder"),
        (["compact", "a" * 300], 3, "cannot be read (File name too long)"),
        (["analyze", "claims", "/no/such"], 3, "No such results folder: /no/such"),
        # a remote address where only local files work (Path made s3://b/x into ./s3:/b/x)
        *(
            (argv, 2, f"argument {arg}: s3://b/x is a remote address where a local path")
            for argv, arg in (
                (["analyze", "claims", "s3://b/x"], "folder"),
                (["analyze", str(REFERENCE), "--out", "s3://b/x"], "--out"),
                (["claims", "table", "s3://b/x"], "folder"),
                (["claims", "run", "--out", "s3://b/x"], "--out"),
                (["claims", "run", "--sweeps", "s3://b/x"], "--sweeps"),
                (["diagnose", str(REFERENCE), "t", "--out", "s3://b/x"], "--out"),
            )
        ),
        # ... with a slash missing (it wrote ./s3:/b/x), and empty (it wrote into ".")
        (
            ["analyze", str(REFERENCE), "--out", "s3:/b/x"],
            2,
            "argument --out: s3:/b/x reads as a remote address with a slash missing "
            "(s3://…), and a local path is needed here",
        ),
        (["claims", "run", "--out", "gs:/b"], 2, "(./gs:/b for a folder really named gs:)"),
        (["analyze", str(REFERENCE), "--out", ""], 2, "argument --out: an empty path: give a"),
        (["analyze", "claims", "s3://b/x"], 2, "copy remote results down first"),
        (["analyze", str(REFERENCE), "--out", "file:///o?q=1"], 2, "with a query or fragment"),
        (["claims", "table", "a" * 300], 3, "cannot be read (File name too long)"),
    ],
)
def test_a_refusal_is_one_line_naming_the_problem(
    argv: list[str], code: int, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # WHEN the command line refuses it
    assert main(argv) == code
    # THEN one line on stderr says what and where to look
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err, err


@pytest.mark.parametrize("flag", ["--vers", "--version"])
def test_argparse_abbreviations_still_work_before_the_command(
    flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        main([flag])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("memsweep ")


def test_a_prediction_with_abbreviated_flags_is_the_same(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN the committed reference run; WHEN the same budget question is asked with
    # argparse's abbreviations and in full
    budget = ["--budget", "8GB", "--solve-for", "num_workers"]
    assert main(["analyze", "predict", str(REFERENCE), *POINT, "torch", *budget]) == 0
    full = capsys.readouterr().out
    short = ["--rep", "12000", "--num", "2", "--model", "256,256", "--fr", "torch", "--bud", "8GB"]
    assert main(["analyze", "predict", str(REFERENCE), *short, "--so", "num_workers"]) == 0
    # THEN the answers are the same
    assert capsys.readouterr().out == full and "largest num_workers" in full


def test_a_command_name_as_a_flags_value_is_that_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN no folder here; WHEN the report goes to folders named like commands, with
    # --out before the results folder and after it
    monkeypatch.chdir(tmp_path)
    assert main(["analyze", "--out", "predict", str(REFERENCE)]) == 0
    assert main(["analyze", "--confidence", "0.9", str(REFERENCE), "--out", "designs"]) == 0
    # THEN each is written where asked, and neither value was taken for a command
    assert (tmp_path / "predict" / "report.md").is_file()
    assert (tmp_path / "designs" / "report.md").is_file()
    assert "is a command" not in capsys.readouterr().err


def test_a_results_folder_named_like_a_command_is_still_a_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a folder called "predict" here (not a sweep's results)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "predict").mkdir()
    # WHEN it follows a report flag, THEN it is the report's folder, refused as one
    assert main(["analyze", "--confidence", "0.9", "predict"]) == 3
    assert "predict is a command" not in capsys.readouterr().err


def test_a_local_file_url_and_a_folder_named_like_a_scheme_are_local_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a file:// URL of a local folder, and ./s3:/… for a folder really named "s3:"
    monkeypatch.chdir(tmp_path)
    # WHEN the report is written to each
    assert main(["analyze", str(REFERENCE), "--out", f"file://{tmp_path}/by-url"]) == 0
    assert main(["analyze", str(REFERENCE), "--out", f"FILE://LOCALHOST{tmp_path}/upper"]) == 0
    assert main(["analyze", str(REFERENCE), "--out", "./s3:/b"]) == 0
    # THEN each is that local folder
    assert (tmp_path / "by-url" / "report.md").is_file()
    assert (tmp_path / "upper" / "report.md").is_file()
    assert (tmp_path / "s3:" / "b" / "report.md").is_file()

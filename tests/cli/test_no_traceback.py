"""No traceback from any entry: bad output paths, foreign and damaged results folders,
generated arguments. Each case asserts the one line a user sees and the exit code."""

from __future__ import annotations

import shutil
import string
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memsweep.cli.main import main
from memsweep.errors import EXIT_CODES
from memsweep.testing.damage import DAMAGE, damage_results
from memsweep.testing.synthetic import SynthTrial, write_sweep

# memsweep.cli re-exports the function main, which hides the module of the same name.
cli_main_module = sys.modules["memsweep.cli.main"]

TRIALS = [
    SynthTrial("t0", 20_000, plateau_s=15.0),
    SynthTrial("t1", 40_000, model="64x64", plateau_s=15.0),
]


@pytest.fixture(scope="module")
def small_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("small")
    return Path(write_sweep(root / "small", TRIALS, interval_s=0.5).path)


def copy_of(results: Path, tmp_path: Path, name: str = "copy") -> Path:
    target = tmp_path / name
    shutil.copytree(results, target)
    return target


def one_line(capsys: pytest.CaptureFixture[str], prefix: str = "memsweep analyze: ") -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(prefix), lines[0]
    return lines[0]


def test_an_out_folder_the_kernel_refuses_is_one_line_before_the_analysis(
    small_results: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["analyze", str(small_results), "--out", "/proc/forbidden"])
    assert code == 5
    assert one_line(capsys) == (
        "memsweep analyze: --out /proc/forbidden: cannot write there "
        "(No such file or directory): give a folder you can write to"
    )


def test_an_out_naming_an_existing_file_is_refused_and_the_file_kept(
    small_results: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    existing = tmp_path / "notes.txt"
    existing.write_text("mine")
    code = main(["analyze", str(small_results), "--out", str(existing)])
    assert code == 5
    assert one_line(capsys) == (
        f"memsweep analyze: --out {existing}: {existing} is a file, not a folder: give a "
        "folder path (it is created if missing)"
    )
    assert existing.read_text() == "mine"


def test_python_m_analyze_with_a_forbidden_out_is_one_line(small_results: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "memsweep.analyze", str(small_results), "--out", "/proc/x"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 5, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "memsweep analyze: --out /proc/x: cannot write there (No such file or directory): "
        "give a folder you can write to"
    ]


def test_trials_of_a_foreign_trainable_without_memsweep_factors_are_analysed(
    small_results: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN trials that carry none of memsweep's factor values (another trainable)
    folder = copy_of(small_results, tmp_path)
    table = pq.read_table(folder / "trials.parquet")
    for column in ("replay_capacity", "model", "num_workers", "framework"):
        index = table.schema.get_field_index(column)
        field = table.schema.field(column)
        table = table.set_column(index, field, pa.nulls(len(table), field.type))
    pq.write_table(table, folder / "trials.parquet")
    # WHEN analysed THEN the report is written and says what was not fitted
    assert main(["analyze", str(folder), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    assert (tmp_path / "out" / "report.md").is_file()
    # AND the per-role plot, titled from the factors a trial has, is among the plots
    assert (tmp_path / "out" / "roles_stacked.png").is_file()


def test_a_file_where_a_table_folder_belongs_is_one_line(
    small_results: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = copy_of(small_results, tmp_path)
    shutil.rmtree(folder / "samples")
    (folder / "samples").write_text("not a folder")
    assert main(["analyze", str(folder), "--out", str(tmp_path / "out")]) == 3
    line = one_line(capsys)
    assert line.startswith(f"memsweep analyze: {folder}/samples cannot be listed as a table folder")
    assert line.endswith("move it aside or restore the folder, then run again")


def test_an_unexpected_exception_is_one_line_with_where_to_report_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class Broken:
        help = "a command with a bug"

        def prepare_parser(self, parser: object) -> None:
            pass

        def run(self, args: object, parser: object) -> int:
            raise KeyError("trial_id")

    monkeypatch.setitem(cli_main_module.COMMANDS, "broken", Broken())
    monkeypatch.delenv("MEMSWEEP_DEBUG", raising=False)
    assert main(["broken"]) == 70
    line = one_line(capsys, "memsweep: ")
    assert line.startswith("memsweep: internal error: KeyError: 'trial_id' (a bug in memsweep ")
    assert "rerun with MEMSWEEP_DEBUG=1 for the traceback" in line
    monkeypatch.setenv("MEMSWEEP_DEBUG", "1")
    assert main(["broken"]) == 70
    assert "Traceback" in capsys.readouterr().err


def test_help_lists_every_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for code, meaning in EXIT_CODES.items():
        assert f"{code}  {meaning}" in out


_WORD = st.text(string.ascii_letters + string.digits + "-_.,/:=", min_size=0, max_size=12)
_FLAGS = {
    "report": ["--confidence", "--min-leak-rate", "--out"],
    "predict": [
        "--confidence",
        "--replay-capacity",
        "--num-workers",
        "--model",
        "--model-params",
        "--framework",
        "--budget",
        "--solve-for",
    ],
    "designs": ["--sizes", "--confidence"],
}


@st.composite
def analyze_argv(draw: st.DrawFn, results: Path, out: Path) -> list[str]:
    command = draw(st.sampled_from(sorted(_FLAGS)))
    argv = ["analyze", command, str(results)]
    for flag in draw(st.lists(st.sampled_from(_FLAGS[command]), max_size=3, unique=True)):
        value = str(out) if flag == "--out" else draw(_WORD)
        argv += [flag, value]
    return argv


@pytest.mark.slow
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data(), how=st.sampled_from(DAMAGE))
def test_generated_arguments_on_damaged_folders_never_give_a_traceback(
    small_results: Path,
    tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
    data: st.DataObject,
    how: str,
) -> None:
    # GIVEN a copy of a valid results folder, damaged one way, inside a sandbox
    sandbox = tmp_path_factory.mktemp("sandbox")
    folder = copy_of(small_results, sandbox, "results")
    damage_results(folder, how)
    out = sandbox / "out"
    before = {p for p in sandbox.parent.iterdir()}
    argv = data.draw(analyze_argv(folder, out))
    # WHEN the CLI runs with generated flags
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    # THEN it ends with a documented exit code, and any error is one line, no traceback
    assert code in EXIT_CODES and code != 70, (argv, how, err)
    assert "Traceback" not in err
    if code != 0:
        assert len(err.strip().splitlines()) == 1, (argv, how, err)
    # AND nothing was written beside the sandbox
    assert {p for p in sandbox.parent.iterdir()} == before


@pytest.mark.parametrize(
    "argv",
    [
        ["--version"],
        ["validate"],
        ["validate", "/nonexistent.yaml"],
        ["analyze", "/nonexistent"],
        ["analyze", "predict", "/nonexistent", "--budget", "lots"],
        ["status"],
        ["nonsense"],
    ],
)
def test_the_installed_entry_points_answer_bad_input_in_one_line(argv: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "memsweep", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in result.stderr
    assert result.returncode in EXIT_CODES and result.returncode != 70
    if result.returncode != 0:
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_the_readme_lists_every_exit_code_as_errors_defines_it() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = readme.split("<!-- exit-codes:", 1)[1].split("<!-- /exit-codes -->", 1)[0]
    rows = [line for line in block.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert rows == [f"| {code} | {meaning} |" for code, meaning in EXIT_CODES.items()]

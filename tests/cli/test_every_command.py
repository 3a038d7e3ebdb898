"""Every command of ``memsweep`` with generated arguments and damaged inputs: no
traceback, a documented exit code, one line on error, and nothing written outside the
folder the command was given.

**What is stubbed, and why.** Two functions of memsweep's own, the first calls that
start or join Ray, stop with a marker line instead: ``memsweep.run.sweep._init_ray``
(``run``, ``claims run`` and a budget search reach it through ``run_study``) and
``memsweep.run.watch.join_cluster`` (``watch``). Everything before them is the real
code: argument parsing, the sweep file's checks (spec, runtime, RLlib config check,
``stop:``), the refusal of a folder holding another sweep, the claim sweeps' loop, the
results folder's creation and its ``study.yaml``/``versions.json``, and ``watch``'s
reachability check of ``--address``. Starting a Ray cluster for each of the generated
examples would take ~10 s each on this 2-core machine and is what the slow tests do
(tests/run, tests/collect/test_faults.py); Ray itself is not mocked.
"""

from __future__ import annotations

import os
import shutil
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from memsweep.cli.main import main
from memsweep.errors import EXIT_CODES, SpecError
from memsweep.testing.damage import damage_results
from memsweep.testing.synthetic import SynthTrial, write_sweep

REACHED = "stopped before Ray: argument handling passed"

CLAIM_SWEEPS = Path(__file__).resolve().parents[2] / "sweeps" / "claims"

TRIALS = [
    SynthTrial("t0", 20_000, plateau_s=15.0),
    SynthTrial("t1", 40_000, model="64x64", plateau_s=15.0),
]

VALID_SWEEP = """\
name: gen
algorithm: DQN
env: {id: memsweep/Synthetic-v0, obs_shape: [16], episode_len: 50}
factors: {replay_capacity: [1000, 2000], num_workers: [0]}
stop: {env_steps: 2000}
"""


@pytest.fixture(scope="module")
def valid_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("valid")
    return Path(write_sweep(root / "results", TRIALS, interval_s=0.5).path)


@pytest.fixture
def no_ray(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The two calls of memsweep that start or join Ray stop with the marker line (see
    the module docstring); the environment variables ``run_study`` sets for Tune are
    restored after each example."""
    import memsweep.run.sweep
    import memsweep.run.watch

    def stop(*args: Any, **kwargs: Any) -> Any:
        raise SpecError(REACHED)

    monkeypatch.setattr(memsweep.run.sweep, "_init_ray", stop)
    monkeypatch.setattr(memsweep.run.watch, "join_cluster", stop)
    for name in ("RAY_AIR_NEW_OUTPUT", "TUNE_GLOBAL_CHECKPOINT_S"):
        monkeypatch.setenv(name, os.environ.get(name, "unset-by-test"))
        monkeypatch.delenv(name)
    yield


FOLDER_DAMAGE = [
    "none",
    "truncate_trials",
    "garbage_part",
    "no_trials",
    "samples_is_file",
    "bad_versions",
    "future_version",
    "bad_study",
    "empty",
]

_WORD = st.text(string.ascii_letters + string.digits + "-_.,/:=", min_size=0, max_size=10)
_NUMBERISH = st.one_of(
    _WORD,
    st.integers(-(10**12), 10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["64", "64GB", "1e400", "-1", "0", "nan", "0.5", "", "NaN", "1.5GiB"]),
)


@st.composite
def sweep_text(draw: st.DrawFn) -> str:
    """The valid sweep, or it damaged: truncated, a line dropped, a value replaced."""
    lines = VALID_SWEEP.splitlines()
    # (valid twice as often: a valid file is what gets a command as far as Ray's start)
    how = draw(
        st.sampled_from(["valid", "valid", "truncate", "drop_line", "replace_value", "junk"])
    )
    if how == "truncate":
        return VALID_SWEEP[: draw(st.integers(0, len(VALID_SWEEP)))]
    if how == "drop_line":
        index = draw(st.integers(0, len(lines) - 1))
        return "\n".join(lines[:index] + lines[index + 1 :]) + "\n"
    if how == "replace_value":
        index = draw(st.integers(0, len(lines) - 1))
        key = lines[index].split(":", 1)[0]
        return "\n".join([*lines[:index], f"{key}: {draw(_NUMBERISH)}", *lines[index + 1 :]])
    if how == "junk":
        return draw(st.text(max_size=200))
    return VALID_SWEEP


@st.composite
def argv_for(draw: st.DrawFn, sweep: Path, results: Path, other: Path, out: Path) -> list[str]:
    """A command line of any memsweep command, with generated flags and values."""
    command = draw(
        st.sampled_from(
            ["validate", "run", "analyze", "predict", "compare", "compact", "claims", "watch"]
        )
    )
    word, number = draw(_WORD), draw(_NUMBERISH)
    if command == "validate":
        flags = draw(
            st.sampled_from([[], ["--explain"], ["--bogus"], ["--address", "127.0.0.1:9"]])
        )
        return ["validate", str(sweep), *flags]
    if command == "run":
        extra = draw(
            st.lists(
                st.sampled_from(
                    [["--storage", str(out)], ["--resume"], ["--as-grid"], ["--bogus", word]]
                ),
                max_size=2,
            )
        )
        return ["run", str(sweep), *[part for flags in extra for part in flags]]
    if command == "analyze":
        flags = draw(st.sampled_from([[], ["--confidence", number], ["--out", str(out)]]))
        return ["analyze", str(results), *flags]
    if command == "predict":
        flag = draw(
            st.sampled_from(
                ["--replay-capacity", "--num-workers", "--budget", "--confidence", "--set"]
            )
        )
        return ["analyze", "predict", str(results), flag, number]
    if command == "compare":
        flags = draw(st.sampled_from([[], ["--json"], ["--confidence", number]]))
        return ["compare", str(results), str(other), *flags]
    if command == "compact":
        return ["compact", str(draw(st.sampled_from([results, other, out])))]
    if command == "claims":
        return draw(
            st.sampled_from(
                [
                    ["claims", "table", str(results)],
                    ["claims", "table", str(out)],
                    ["claims", "run", "--bogus"],
                    ["claims", "run", "--out", str(out)],
                    [
                        "claims",
                        "run",
                        "--sweeps",
                        str(CLAIM_SWEEPS),
                        "--only",
                        "workers",
                        "--out",
                        str(out),
                    ],
                    ["claims"],
                ]
            )
        )
    flags = draw(
        st.sampled_from(
            [
                [],
                ["--address", word],
                ["--address", "127.0.0.1:9", "--seconds", number],
                ["--address", "127.0.0.1:9", "--out", str(out), "--job", word],
            ]
        )
    )
    return ["watch", *flags]


def tree(root: Path, skip: set[Path]) -> set[Path]:
    """Every path under root, except under the folders in skip."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d not in skip]
        found.update(here / name for name in [*dirnames, *filenames])
    return found


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data(), how=st.sampled_from(FOLDER_DAMAGE), text=sweep_text())
def test_every_command_with_generated_arguments_ends_in_one_line_and_writes_only_where_told(
    valid_results: Path,
    tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    no_ray: None,
    data: st.DataObject,
    how: str,
    text: str,
) -> None:
    # GIVEN a sandbox holding a sweep file (maybe damaged), a results folder (maybe
    # damaged), a second one, and the place named for output; the sandbox is the cwd
    sandbox = tmp_path_factory.mktemp("every")
    sweep = sandbox / "sweep.yaml"
    sweep.write_text(text)
    results, other, out = sandbox / "results", sandbox / "other", sandbox / "out"
    shutil.copytree(valid_results, results)
    shutil.copytree(valid_results, other)
    damage_results(results, how)
    monkeypatch.chdir(sandbox)
    argv = data.draw(argv_for(sweep, results, other, out))
    intended = {results, other, out, sandbox / "results-grid"}
    before_sandbox = tree(sandbox, intended)
    before_all = tree(sandbox, set())
    before_parent = set(sandbox.parent.iterdir())
    # WHEN the command runs
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's --help and usage errors
        code = int(exit_.code or 0)
    err = capsys.readouterr().err
    label = argv[1] if len(argv) > 1 and argv[1] in ("predict", "table", "run") else ""
    reached = REACHED in err
    event(f"{argv[0]} {label}: exit {code}" + (" at Ray's start" if reached else ""))
    # THEN a documented exit code, never the internal-error one, and no traceback
    assert code in EXIT_CODES and code != 70, (argv, how, err)
    assert "Traceback" not in err, (argv, how, err)
    # AND an error is one line (argparse's usage line aside)
    if code != 0:
        lines = [
            line for line in err.splitlines() if line.strip() and not line.startswith("usage:")
        ]
        lines = [line for line in lines if not line.startswith(" ")]
        assert len(lines) == 1, (argv, how, err)
    # AND nothing was written outside the folders the command was given
    assert tree(sandbox, intended) == before_sandbox, (argv, how)
    assert set(sandbox.parent.iterdir()) == before_parent, (argv, how)
    # AND a sweep that got to Ray's start had written its study.yaml by the real path
    if reached and argv[0] in ("run", "claims"):
        assert any(p.name == "study.yaml" for p in tree(sandbox, set()) - before_all), argv


def test_run_of_a_valid_sweep_reaches_rays_start_with_its_results_folder_written(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    no_ray: None,
) -> None:
    # GIVEN a valid sweep file in an empty folder
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sweep.yaml").write_text(VALID_SWEEP)
    # WHEN it is run (Ray's start stubbed, as in the property test)
    code = main(["run", "sweep.yaml"])
    # THEN every check passed, and run_study wrote the folder before starting Ray
    assert (code, capsys.readouterr().err.strip()) == (2, f"memsweep: {REACHED}")
    folder = tmp_path / "results" / "gen"
    assert {"study.yaml", "versions.json"} <= {p.name for p in folder.iterdir()}
    # AND a second run of another sweep into that folder is refused by the real check
    (tmp_path / "other.yaml").write_text(VALID_SWEEP.replace("[1000, 2000]", "[3000]"))
    assert main(["run", "other.yaml", "--storage", str(folder)]) == 2
    assert f"memsweep: {folder} holds another sweep" in capsys.readouterr().err


def test_watch_of_an_address_nothing_answers_at_is_the_real_one_line_exit_4(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_ray: None
) -> None:
    # (the reachability check runs before the stubbed join)
    assert main(["watch", "--address", "127.0.0.1:9", "--out", str(tmp_path / "w")]) == 4
    err = capsys.readouterr().err.strip()
    assert err.startswith("memsweep: Cannot reach the Ray cluster at 127.0.0.1:9: ")
    assert not (tmp_path / "w").exists()


def test_a_sweep_file_with_a_control_character_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # (found by the property test above: YAML's reader refused it before memsweep's
    # guard, an internal error, exit 70)
    sweep = tmp_path / "bell.yaml"
    sweep.write_text("name: x\x07\n")
    capsys.readouterr()
    assert main(["validate", str(sweep)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"memsweep: {sweep}: character 8: not valid YAML: unacceptable character #x0007: "
        "special characters are not allowed"
    )

"""``memsweep diagnose``: a real trial with a planted leak (an env that keeps 16 kB per
env step at one known line, :mod:`memsweep.testing.planted`) is rerun with memray in its
trainable, and with tracemalloc in its remote env runner, and each report names that
line, with the bytes the leak kept. Fast tests: the default role from growth verdicts,
and tracemalloc's two snapshots in this process."""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from memsweep.analyze.leaks import GrowthVerdict
from memsweep.cli.diagnose import default_role
from memsweep.run import profile
from memsweep.run.diagnose import AllocationSite, grown_sites, held_sites
from memsweep.testing import planted
from memsweep.testing.raycluster import memsweep
from memsweep.units import Estimate

LEAK_BYTES = 16_384

SWEEP = f"""\
name: planted-leak
algorithm: PPO
env:
  id: memsweep.testing.planted:LeakyEnv
  env_config: {{leak_bytes: {LEAK_BYTES}}}
factors:
  replay_capacity: [0]
  model: ["32,32"]
  num_workers: [0]
  framework: [torch]
training: {{train_batch_size: 500}}
rllib: {{minibatch_size: 250, num_epochs: 1}}
stop: {{iterations: 4}}
"""


def run_sweep(folder: Path, text: str) -> Path:
    (folder / "sweep.yaml").write_text(text + f"storage: {folder / 'results'}\n")
    done = memsweep("run", folder / "sweep.yaml", cwd=folder)
    assert done.returncode == 0, done.stderr[-2000:]
    return folder / "results"


@pytest.fixture(scope="module")
def leaky_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_sweep(tmp_path_factory.mktemp("planted"), SWEEP)


def trial_id(results: Path) -> str:
    return str(pq.read_table(results / "trials.parquet")["trial_id"][0])


@pytest.mark.slow
def test_diagnose_names_the_planted_allocation_site(leaky_results: Path, tmp_path: Path) -> None:
    # GIVEN a real one-trial sweep whose env keeps 16 kB per env step at a known line
    trial = trial_id(leaky_results)
    # WHEN diagnose reruns that trial with memray, the role left to its default
    done = memsweep("diagnose", leaky_results, trial, "--out", tmp_path / "d", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    # THEN it says which role it tracks and why (4 iterations are too few to flag growth)
    assert (
        f"memsweep diagnose: no role of trial {trial} is flagged as growing (the trial's "
        "verdict: too little plateau): tracking the trainable"
    ) in done.stdout.splitlines()
    # AND the largest site still holding memory is the planted line, holding what the
    # leak kept over the rerun's env steps
    lines = done.stdout.splitlines()  # Tune's progress table comes first.
    first = lines[
        lines.index(next(line for line in lines if line.startswith("memsweep diagnose: trial"))) + 1
    ]
    assert f"keep ({Path(planted.__file__)}:{planted.LEAK_LINE})" in first, done.stdout
    (capture,) = (tmp_path / "d" / "captures").glob("trainable-*.bin")
    top: AllocationSite = held_sites(capture)[0]
    assert (top.function, top.line) == (planted.LEAK_FUNCTION, planted.LEAK_LINE)
    rerun_steps = int(pq.read_table(tmp_path / "d" / "rerun" / "trials.parquet")["env_steps"][0])
    # Steps sampled after set-up; RLlib may sample a few before its first result counts them.
    assert top.allocations == pytest.approx(rerun_steps, rel=0.05)
    assert top.held_bytes == pytest.approx(top.allocations * LEAK_BYTES, rel=0.01)
    assert "flamegraph" in (tmp_path / "d" / "flamegraph.html").read_text()[:100_000].lower()
    assert f"planted.py:{planted.LEAK_LINE}" in (tmp_path / "d" / "sites.md").read_text()


@pytest.mark.slow
def test_diagnose_refuses_an_unknown_trial_and_a_role_with_no_process(
    leaky_results: Path, tmp_path: Path
) -> None:
    unknown = memsweep("diagnose", leaky_results, "nosuch_00000", cwd=tmp_path)
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines() == [
        f"memsweep: no trial 'nosuch_00000' in {leaky_results}; its trials: {trial_id(leaky_results)}"
    ]
    runner = memsweep(
        "diagnose", leaky_results, trial_id(leaky_results), "--role", "env_runner", cwd=tmp_path
    )
    assert runner.returncode == 2
    assert "has no env_runner process (num_workers 0" in runner.stderr
    assert len(runner.stderr.strip().splitlines()) == 1
    learner = memsweep(
        "diagnose", leaky_results, trial_id(leaky_results), "--role", "learner", cwd=tmp_path
    )
    assert learner.returncode == 2
    assert learner.stderr.strip().splitlines() == [
        "memsweep: --role learner: diagnose tracks trainable, env_runner only; the env runs "
        "in the env runners (or in the trainable when num_workers is 0)"
    ]


@pytest.fixture(scope="module")
def runner_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real one-trial sweep whose env, in one remote env runner, keeps 16 kB per step."""
    sweep = SWEEP.replace("num_workers: [0]", "num_workers: [1]").replace(
        "iterations: 4", "iterations: 3"
    )
    return run_sweep(tmp_path_factory.mktemp("planted-runner"), sweep)


@pytest.mark.slow
def test_memray_in_the_env_runner_names_the_planted_site(
    runner_results: Path, tmp_path: Path
) -> None:
    # GIVEN the env runner's planted leak; WHEN diagnose reruns the trial with memray (the
    # default tracker when installed) in its env runner
    trial = trial_id(runner_results)
    done = memsweep(
        "diagnose", runner_results, trial, "--role", "env_runner", "--out", tmp_path / "d",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    # THEN the env runner's capture was closed before the algorithm killed the runner, and
    # its top held site is the planted line, one block per env step of the rerun
    (capture,) = (tmp_path / "d" / "captures").glob("env_runner-*.bin")
    top = held_sites(capture)[0]
    assert (top.function, top.line) == (planted.LEAK_FUNCTION, planted.LEAK_LINE)
    rerun_steps = int(pq.read_table(tmp_path / "d" / "rerun" / "trials.parquet")["env_steps"][0])
    assert top.allocations == pytest.approx(rerun_steps, rel=0.05)
    assert top.held_bytes == pytest.approx(top.allocations * LEAK_BYTES, rel=0.01)
    assert "over 1 env_runner process(es) (memray" in done.stdout
    assert (tmp_path / "d" / "flamegraph.html").exists()


@pytest.mark.slow
def test_tracemalloc_in_the_env_runner_names_the_planted_site(
    runner_results: Path, tmp_path: Path
) -> None:
    # GIVEN the env runner's planted leak
    results = runner_results
    trial = trial_id(results)
    # WHEN diagnose reruns it with tracemalloc in its env runner
    done = memsweep(
        "diagnose", results, trial, "--role", "env_runner", "--tracker", "tracemalloc",
        "--out", tmp_path / "d", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    # THEN the line that grew most between the env runner's two snapshots is the planted
    # one, by one block per env step the rerun sampled
    lines = done.stdout.splitlines()
    heading = next(line for line in lines if line.startswith("memsweep diagnose: trial"))
    assert "role env_runner: allocations that grew between two tracemalloc snapshots" in heading
    first = lines[lines.index(heading) + 1]
    assert f"({Path(planted.__file__)}:{planted.LEAK_LINE})" in first, done.stdout
    (report,) = (tmp_path / "d" / "captures").glob("env_runner-*.tracemalloc.json")
    top = grown_sites(report)[0]
    assert (Path(top.file), top.line) == (Path(planted.__file__), planted.LEAK_LINE)
    assert "HELD.append" in top.function
    rerun_steps = int(pq.read_table(tmp_path / "d" / "rerun" / "trials.parquet")["env_steps"][0])
    assert top.allocations == pytest.approx(rerun_steps, rel=0.05)
    assert top.held_bytes == pytest.approx(top.allocations * LEAK_BYTES, rel=0.01)
    assert not (tmp_path / "d" / "flamegraph.html").exists()
    assert f"planted.py:{planted.LEAK_LINE}" in (tmp_path / "d" / "sites.md").read_text()


def verdict(role: str, kind: str, rate: float | None = None) -> GrowthVerdict:
    return GrowthVerdict(
        trial_id="t_00000",
        role=role,
        verdict=kind,  # type: ignore[arg-type]
        fit=None,
        rate_mb_per_1m_steps=None if rate is None else Estimate(rate, rate * 0.8, rate * 1.2),
        rate_mb_per_h=None,
        projected_bytes=None,
        horizon_env_steps=1e7,
        text=kind,
    )


@pytest.mark.parametrize(
    ("verdicts", "role", "why"),
    [
        (
            [verdict("trainable", "sustained growth", 500.0), verdict("env_runner", "sustained growth", 2000.0)],
            "env_runner",
            "tracking the env_runner: the analysis flags it with sustained growth at 2 MB per 1k env steps (also flagged: trainable)",
        ),
        (
            [verdict("trainable", "sustained growth", 500.0), verdict("total", "sustained growth", 500.0)],
            "trainable",
            "tracking the trainable: the analysis flags it with sustained growth at 0.5 MB per 1k env steps",
        ),
        (
            [verdict("trainable", "no growth"), verdict("total", "settling")],
            "trainable",
            "no role of trial t_00000 is flagged as growing (the trial's verdict: settling): tracking the trainable",
        ),
        (
            [verdict("learner", "sustained growth", 900.0), verdict("trainable", "no growth")],
            "trainable",
            "the analysis flags learner, which diagnose cannot track: tracking the trainable",
        ),
        (
            [],
            "trainable",
            "trial t_00000 has no growth verdict (not analysed): tracking the trainable",
        ),
    ],
)  # fmt: skip
def test_the_default_role_is_the_flagged_one_and_says_why(
    verdicts: list[GrowthVerdict], role: str, why: str
) -> None:
    assert default_role(verdicts, "t_00000") == (role, why)


def test_tracemalloc_reports_the_line_whose_allocations_grew_between_its_snapshots(
    tmp_path: Path,
) -> None:
    # GIVEN tracking started in this process for role "probe", tracemalloc asked for
    wanted = {"role": "probe", "dir": str(tmp_path), "tracker": "tracemalloc"}
    assert profile.start("other", wanted) is None
    assert profile.start("probe", wanted) == "tracemalloc"
    kept = []
    # WHEN one line keeps 200 blocks of 10 kB and another allocates and frees
    for _ in range(200):
        kept.append(bytearray(10_000))
        del bytearray(50_000)[:]
    line = sys._getframe().f_lineno - 2
    profile.stop()
    # THEN the report's top line is the keeping one, grown by what it kept
    (report,) = tmp_path.glob("probe-*.tracemalloc.json")
    top = grown_sites(report)[0]
    assert (top.file, top.line) == (__file__, line)
    assert top.function == "kept.append(bytearray(10_000))"
    assert top.allocations >= 200  # A bytearray is its object and its buffer: two blocks.
    assert top.held_bytes == pytest.approx(200 * 10_000, rel=0.02)
    assert len(kept) == 200


def test_memray_holds_a_line_at_its_objects_not_at_pymalloc_arenas(tmp_path: Path) -> None:
    pytest.importorskip("memray")
    kept: list[tuple[int, int]] = []

    def keep(n: int) -> int:
        for i in range(n):
            kept.append((i, -i))
        return sys._getframe().f_lineno - 2

    # GIVEN memray tracking started in this process (memray names the frames entered after)
    wanted = {"role": "probe", "dir": str(tmp_path), "tracker": "memray"}
    assert profile.start("probe", wanted) == "memray"
    # WHEN one line keeps 20,000 small tuples (pymalloc maps fresh 1 MiB arenas for them)
    line = keep(20_000)
    profile.stop()
    # THEN that line holds about one small object per tuple kept (some come from
    # CPython's free lists), not two arenas of 1 MiB in two allocations (what memray
    # reports when it sees pymalloc only through the arenas it maps)
    (capture,) = tmp_path.glob("probe-*.bin")
    site = next(s for s in held_sites(capture) if (s.file, s.line) == (__file__, line))
    assert site.allocations >= 19_000
    assert 19_000 * 24 <= site.held_bytes <= 20_000 * 100

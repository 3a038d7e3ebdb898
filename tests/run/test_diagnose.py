"""``memsweep diagnose``: a real trial with a planted leak (an env that keeps 16 kB per
env step at one known line, :mod:`memsweep.testing.planted`) is rerun with memray in its
trainable, and the report names that line, with the bytes the leak kept."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from memsweep.run.diagnose import AllocationSite, held_sites
from memsweep.testing import planted
from memsweep.testing.raycluster import memsweep

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


@pytest.fixture(scope="module")
def leaky_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("planted")
    (folder / "sweep.yaml").write_text(SWEEP + f"storage: {folder / 'results'}\n")
    done = memsweep("run", folder / "sweep.yaml", cwd=folder)
    assert done.returncode == 0, done.stderr[-2000:]
    return folder / "results"


def trial_id(results: Path) -> str:
    return str(pq.read_table(results / "trials.parquet")["trial_id"][0])


@pytest.mark.slow
def test_diagnose_names_the_planted_allocation_site(leaky_results: Path, tmp_path: Path) -> None:
    # GIVEN a real one-trial sweep whose env keeps 16 kB per env step at a known line
    trial = trial_id(leaky_results)
    # WHEN diagnose reruns that trial with memray in its trainable
    done = memsweep("diagnose", leaky_results, trial, "--out", tmp_path / "d", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    # THEN the largest site still holding memory is the planted line, holding what the
    # leak kept over the rerun's env steps
    lines = done.stdout.splitlines()  # Tune's progress table comes first.
    first = lines[
        lines.index(next(line for line in lines if line.startswith("memsweep diagnose:"))) + 1
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

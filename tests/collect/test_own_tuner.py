"""memsweep in a Tuner of the user's own: only the public API, no sweep file.

The slow tests run real scripts (``tests/collect/scripts``) as a user would, with Ray
started without its dashboard, and read back what memsweep wrote.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pyarrow.compute as pc
import pytest

from memsweep import result_keys as keys
from memsweep.collect.collector import UNATTRIBUTED, Collector
from memsweep.collect.sampler import SamplerConfig
from memsweep.collect.trials import TrialRow, TrialsTable, flat_config, now_us
from memsweep.collect.tune_results import lookup
from memsweep.errors import ClusterError
from memsweep.store import TRIALS, ResultsWriter, open_results

SCRIPTS = Path(__file__).parent / "scripts"


def test_importing_memsweep_loads_no_ray_and_names_the_public_api() -> None:
    code = (
        "import sys, memsweep; assert 'ray' not in sys.modules; "
        "print(memsweep.MemoryCallback.__name__, memsweep.survive_oom_kills.__name__, "
        "memsweep.result_keys.PEAK_BYTES)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["MemoryCallback", "tune_survives_oom_kills", keys.PEAK_BYTES]


def test_the_trials_table_is_typed_and_names_the_varied_config_keys() -> None:
    # GIVEN two trials of a Tuner whose param space varies one nested key
    table = TrialsTable()
    for trial_id, size in (("t1", 8), ("t2", 16)):
        table.set_config(trial_id, {"env_config": {"size": size}, "lr": 0.001, "flag": True})
        table.update(trial_id, status="running")
    # WHEN the collector takes the rows to write
    rows = table.take_if_changed()
    # THEN each row has its whole flattened config and the varied key as its factor
    assert rows is not None and all(isinstance(row, TrialRow) for row in rows)
    assert json.loads(rows[0].factors_json or "") == {"env_config.size": 8}
    assert json.loads(rows[1].config_json or "") == {
        "env_config.size": 16,
        "lr": 0.001,
        "flag": "True",
    }
    assert set(rows[0].as_record()) == set(TRIALS.names)
    # AND nothing is written again until something changes
    assert table.take_if_changed() is None


def test_rllib_private_config_names_are_the_ones_users_set() -> None:
    assert flat_config({"_train_batch_size_per_learner": 64, "lr": 1}) == {
        "train_batch_size_per_learner": 64,
        "lr": 1,
    }


def test_env_steps_are_found_where_rllib_reports_them() -> None:
    new_stack = {"env_runners": {"num_env_steps_sampled_lifetime": 4000}}
    assert lookup(new_stack, keys.ENV_STEP_KEYS) == 4000
    assert lookup({keys.ENV_STEPS: 7, "timesteps_total": 9}, keys.ENV_STEP_KEYS) == 7
    assert lookup({"env_runners": {}}, keys.ENV_STEP_KEYS) is None


def test_a_trial_that_ended_with_no_attributed_process_is_an_error(tmp_path: Path) -> None:
    # GIVEN a collector (no Ray needed to settle the trials table) and two ended trials,
    # one killed for memory, none of whose processes was ever attributed
    table = TrialsTable()
    writer = ResultsWriter(tmp_path / "results")
    collector = Collector(writer, SamplerConfig(), 1.0, table)
    table.update("ok", status=keys.TERMINATED, ended_at=now_us())
    table.update("killed", status=keys.OOM_KILLED, error="Ray killed it", ended_at=now_us())
    table.update("running", status="running")
    # WHEN the collector's final flush settles the table
    collector._flag_unattributed(final=True)
    collector._write_trials()
    # THEN the terminated trial is an error saying why, the killed one keeps its status
    # and error, and the running one is untouched
    rows = {
        r["trial_id"]: r for r in open_results(tmp_path / "results").table("trials").to_pylist()
    }
    assert (rows["ok"]["status"], rows["ok"]["error"]) == (keys.ERROR, UNATTRIBUTED)
    assert (rows["killed"]["status"], rows["killed"]["error"]) == (keys.OOM_KILLED, "Ray killed it")
    assert rows["running"]["error"] is None


def _run(
    script: str, out: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, **(env or {})}
    environment.pop("RAY_ADDRESS", None)
    return subprocess.run(
        [sys.executable, str(SCRIPTS / script), str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env=environment,
    )


@pytest.mark.slow
def test_an_rllib_tuner_with_only_the_public_callback_produces_a_report(tmp_path: Path) -> None:
    # GIVEN a user's Tuner("PPO", param_space=config) script, Ray without its dashboard,
    # with memsweep.MemoryCallback added and nothing else of memsweep's
    # WHEN it runs two tiny CartPole trials
    run = _run("own_ppo_tuner.py", tmp_path)
    assert run.returncode == 0, run.stderr[-4000:]
    # THEN Tune's results carry memsweep's memory keys
    peaks = [line.split()[2] for line in run.stdout.splitlines() if line.startswith("RESULT")]
    assert len(peaks) == 2 and all(int(p) > 100_000_000 for p in peaks), run.stdout
    # AND every trial's trainable and env runner are attributed to it
    results = open_results(tmp_path / "results")
    samples = results.table("samples")
    mine = samples.filter(pc.is_valid(samples["trial_id"]))
    roles = {(r["trial_id"], r["role"]) for r in mine.select(["trial_id", "role"]).to_pylist()}
    trials = results.table("trials").to_pylist()
    assert roles == {(t["trial_id"], role) for t in trials for role in ("trainable", "env_runner")}
    # AND the trials table has the varied key as a factor, env steps from RLlib's results
    for trial in trials:
        assert trial["status"] == keys.TERMINATED and trial["error"] is None
        factors = json.loads(trial["factors_json"])
        assert set(factors) == {"train_batch_size_per_learner"}
        assert trial["env_steps"] >= 3 * factors["train_batch_size_per_learner"]
        assert trial["peak_bytes"] > 0
    # AND memsweep analyze writes a report on it
    report = subprocess.run(
        [
            sys.executable,
            "-m",
            "memsweep",
            "analyze",
            str(tmp_path / "results"),
            "--out",
            str(tmp_path / "report"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert report.returncode == 0, report.stderr[-3000:]
    assert "2 trials analysed" in report.stdout
    assert (tmp_path / "report" / "report.md").is_file()


@pytest.mark.slow
@pytest.mark.solo
def test_a_trial_rays_memory_monitor_kills_in_a_plain_tuner_fails_alone(tmp_path: Path) -> None:
    # GIVEN a plain Tuner, memsweep's callback and survive_oom_kills, Ray without its
    # dashboard, and Ray's memory monitor set to kill at 3 GB above what this machine
    # uses now; the first trial grows without end, the second holds 200 MB
    vm = psutil.virtual_memory()
    threshold = (vm.total - vm.available + 3e9) / vm.total
    env = {"RAY_memory_usage_threshold": f"{threshold:.4f}", "RAY_memory_monitor_refresh_ms": "100"}
    # WHEN it runs
    run = _run("own_tuner_oom.py", tmp_path, env)
    # THEN fit() returns with both trials run, one failed
    assert run.returncode == 0, run.stderr[-4000:]
    assert "Caught unexpected exception" not in run.stderr
    assert "TRIALS 2 ERRORS 1" in run.stdout
    trials = open_results(tmp_path / "results").table("trials").to_pylist()
    by_size = {json.loads(t["factors_json"])["max_bytes"]: t for t in trials}
    big, small = by_size[12_000_000_000], by_size[200_000_000]
    # AND the killed trial is recorded oom_killed, with its killed process attributed
    assert big["status"] == keys.OOM_KILLED, big
    assert big["killed_role"] == "trainable"
    assert small["status"] == keys.TERMINATED


def test_without_the_gcs_actor_table_memsweep_stops_at_set_up_with_one_line(
    tmp_path: Path,
) -> None:
    # GIVEN no Ray driver connection (so no actor table to attribute processes with)
    import ray

    assert not ray.is_initialized()
    collector = Collector(ResultsWriter(tmp_path / "results"), SamplerConfig(), 1.0)
    # WHEN the collector starts, THEN it refuses with one line saying what to change
    with pytest.raises(ClusterError) as refused:
        collector.start()
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("memsweep cannot read Ray's actor table from the GCS")
    assert "ray.init before Tuner.fit" in message

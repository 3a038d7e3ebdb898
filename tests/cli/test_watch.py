"""``memsweep watch`` attached to a Ray job that is already running, on a real cluster."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow.compute as pc
import pytest

from memsweep.collect.attribution import ActorInfo
from memsweep.run.watch import trials_from_actors, tune_trial_of, unreachable_error
from memsweep.store import open_results
from memsweep.testing.raycluster import analyze, clean_env, memsweep, ray_head

REPO = Path(__file__).resolve().parents[2]

SCRIPT = Path(__file__).parent / "scripts" / "watched_job.py"


def test_a_placement_group_is_a_tune_trial_whose_root_actor_is_its_trainable() -> None:
    # GIVEN a trainable (created by the Tune driver), its env runner (created by it),
    # a job's free actor and memsweep's own sampler
    actors = [
        ActorInfo("a1", "PPO", "pg1", True, "02", owner_worker_id="driver", worker_id="w1"),
        ActorInfo("a2", "SingleAgentEnvRunner", "pg1", True, "02", "w1", "w2"),
        ActorInfo("a3", "Hog", None, True, "02", "driver", "w3"),
        ActorInfo("a4", "NodeSampler", None, True, "03", "watch", "w4"),
    ]
    # WHEN trials are named from the actor table
    trials = {t.trial_id: t for t in trials_from_actors(actors)}
    # THEN the group is a trial whose trainable is PPO, the job's free actor another
    assert set(trials) == {"pg-pg1", "job-02"}
    assert (trials["pg-pg1"].trainable_actor_id, trials["pg-pg1"].trainable_class) == ("a1", "PPO")
    assert trials["job-02"].kind == "job"


def test_a_trainable_in_its_tune_trial_directory_names_its_trial_and_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a process in the working directory Tune gives a trial's trainable, and the
    # params.json Tune's driver writes for it (the layout of Ray 2.60, on one node)
    experiment = tmp_path / "artifacts" / "2026-11-30_03-33-15" / "hold_2026-11-30_03-33-15"
    name = "hold_c740d_00001_1_held_mb=250_2026-11-30_03-33-20"
    (experiment / "working_dirs" / name).mkdir(parents=True)
    monkeypatch.chdir(experiment / "working_dirs" / name)
    # WHEN the watch reads it from /proc, before and after Tune wrote the config
    found = tune_trial_of(os.getpid())
    assert found is not None
    before = found.config()
    (experiment / "driver_artifacts" / name).mkdir(parents=True)
    (experiment / "driver_artifacts" / name / "params.json").write_text('{"held_mb": 250}')
    # THEN it names Tune's trial id, and the config once it is there
    assert (found.trial_id, before, found.config()) == ("c740d_00001", None, {"held_mb": 250})
    # AND a process anywhere else is in no Tune trial
    monkeypatch.chdir(tmp_path)
    assert tune_trial_of(os.getpid()) is None


def test_watch_refuses_a_cluster_it_cannot_reach_with_one_line() -> None:
    result = memsweep("watch", "--address", "127.0.0.1:1", "--seconds", "1", timeout=300)
    assert result.returncode == 4, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("memsweep")]
    assert len(lines) == 1 and "Cannot reach the Ray cluster at 127.0.0.1:1" in lines[0]
    assert "Traceback" not in result.stderr
    # AND before it connects it says it is connecting, not recording
    assert result.stdout.startswith("memsweep watch: connecting to 127.0.0.1:1, then recording")


def test_watch_auto_without_a_ray_on_this_machine_says_to_start_one() -> None:
    # GIVEN what Ray 2.60 raises for --address auto when no Ray runs on this node (a
    # machine-independent stand-in: `auto` would join any Ray that runs here)
    found = ConnectionError(
        "Could not find any running Ray instance. Please specify the one to connect to by "
        "setting `--address` flag or `RAY_ADDRESS` environment variable."
    )
    # WHEN watch words it, and for an address that names a host
    auto = str(unreachable_error("auto", found))
    named = str(unreachable_error("10.0.0.5:6379", ConnectionError("Connection refused")))
    # THEN with auto the fix is to start one, not --address auto again
    assert auto.startswith("Cannot reach the Ray cluster at auto: Could not find any running")
    assert "ray start --head" in auto and "with --address auto" not in auto
    # AND with a named address the fix offers auto on a node of the cluster
    assert named.endswith("or run on a node of the cluster with --address auto.")
    # AND no sentence ends twice
    assert ".." not in auto and ".." not in named


@pytest.mark.slow
def test_watch_attached_to_a_running_job_records_its_processes_and_analyze_reports(
    tmp_path: Path,
) -> None:
    # GIVEN a Ray cluster started with `ray start --head`, and a job on it that holds
    # 300 MB in an actor and 200 and 250 MB in two Tune trials (a grid over held_mb)
    with ray_head(num_cpus=2) as head:
        env = clean_env(
            RAY_AUTH_MODE="token",
            RAY_AUTH_TOKEN_PATH=str(head.token_path),
            # As the head: a one-machine Ray on 127.0.0.1, not the outward IP.
            RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
        )
        job_log = (tmp_path / "job.log").open("w")
        job = subprocess.Popen(
            [sys.executable, str(SCRIPT), head.gcs_address, str(tmp_path / "tune")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=job_log,  # Tune's chatter, not left to fill a pipe nobody reads
            text=True,
        )
        # A job that cannot reach the cluster retries for ever: end it, and the test.
        watchdog = threading.Timer(400, job.kill)
        watchdog.start()
        try:
            assert job.stdout is not None
            job_id = job.stdout.readline().split()[1]
            hog_pid = int(job.stdout.readline().split()[1])
            # WHEN memsweep watch attaches to it until the job ends
            out = tmp_path / "watched"
            watch = memsweep(
                "watch",
                "--address",
                head.gcs_address,
                "--job",
                job_id,
                "--out",
                str(out),
                env=env,
                timeout=400,
            )
            rest, _ = job.communicate(timeout=300)
        finally:
            watchdog.cancel()
            if job.poll() is None:
                job.kill()
            job_log.close()
        assert job.returncode == 0, (tmp_path / "job.log").read_text()[-3000:]
        ran = [line.split()[1:] for line in rest.splitlines() if line.startswith("TRIAL")]
    # THEN the watch stopped when the job ended
    assert watch.returncode == 0, watch.stderr[-3000:]
    assert "job ended" in watch.stdout
    results = open_results(out)
    trials = {t["trial_id"]: t for t in results.table("trials").to_pylist()}
    samples = results.table("samples")

    def rows_of(pid: int) -> list[dict[str, object]]:
        return samples.filter(pc.equal(samples["pid"], pid)).to_pylist()

    # AND the job's actor is attributed to the job, holding its 300 MB
    hog = [r for r in rows_of(hog_pid) if r["trial_id"] is not None]
    assert {(r["trial_id"], r["role"], r["actor_class"]) for r in hog} == {
        (f"job-{job_id}", "actor", "Hog")
    }
    assert max(int(r["rss_bytes"]) for r in hog) > 300_000_000
    # AND each Tune trial's trainable is attributed to its trial, by Tune's own trial id,
    # with the config Tune gave it and the key the trials differ in as their factor
    assert len(ran) == 2, rest
    for pid, tune_trial_id, held_mb in ran:
        mine = [r for r in rows_of(int(pid)) if r["trial_id"] is not None]
        assert {(r["trial_id"], r["role"], r["actor_class"]) for r in mine} == {
            (tune_trial_id, "trainable", "ImplicitFunc")
        }
        assert max(int(r["rss_bytes"]) for r in mine) > int(held_mb) * 1_000_000
        row = trials[tune_trial_id]
        assert row["status"] == "terminated"
        assert json.loads(str(row["config_json"]))["held_mb"] == int(held_mb)
        assert json.loads(str(row["factors_json"])) == {"held_mb": int(held_mb)}
    # AND memsweep analyze reports on what it wrote
    report = analyze(str(out), "--out", str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr[-3000:]
    assert "| trial | held_mb |" in (tmp_path / "report" / "report.md").read_text()


def test_watch_refuses_a_folder_that_already_holds_a_recording(tmp_path: Path) -> None:
    # GIVEN a folder with samples in it (a committed reference run's copy)
    out = tmp_path / "watched"
    shutil.copytree(REPO / "results" / "reference-ppo-train-batch", out)
    # WHEN watch is told to record into it THEN one line and exit 2, before any cluster
    result = memsweep("watch", "--address", "127.0.0.1:1", "--out", str(out), timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("memsweep")]
    assert len(lines) == 1 and "already holds a recording" in lines[0], result.stderr
    assert "Traceback" not in result.stderr and "recording" not in result.stdout

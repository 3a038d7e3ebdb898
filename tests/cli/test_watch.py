"""``memsweep watch`` attached to a Ray job that is already running, on a real cluster."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pyarrow.compute as pc
import pytest

from memsweep.collect.attribution import ActorInfo
from memsweep.run.watch import trials_from_actors
from memsweep.store import open_results
from memsweep.testing.raycluster import analyze, clean_env, memsweep, ray_head

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


def test_watch_refuses_a_cluster_it_cannot_reach_with_one_line() -> None:
    result = memsweep("watch", "--address", "127.0.0.1:1", "--seconds", "1", timeout=300)
    assert result.returncode == 4, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("memsweep")]
    assert len(lines) == 1 and "Cannot reach the Ray cluster at 127.0.0.1:1" in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_watch_attached_to_a_running_job_records_its_processes_and_analyze_reports(
    tmp_path: Path,
) -> None:
    # GIVEN a Ray cluster started with `ray start --head`, and a job on it that holds
    # 300 MB in an actor and 200 MB in a Tune trial
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
        trial_pid = int(rest.split("TRIAL")[1].split()[0])
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
    # AND the Tune trial's trainable is attributed to a trial of its own, holding 200 MB
    mine = [r for r in rows_of(trial_pid) if r["trial_id"] is not None]
    assert {(r["role"], r["actor_class"]) for r in mine} == {("trainable", "ImplicitFunc")}
    (tune_trial,) = {r["trial_id"] for r in mine}
    assert trials[tune_trial]["status"] == "terminated"
    assert max(int(r["rss_bytes"]) for r in mine) > 200_000_000
    # AND memsweep analyze reports on what it wrote
    report = analyze(str(out), "--out", str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr[-3000:]
    assert (tmp_path / "report" / "report.md").is_file()

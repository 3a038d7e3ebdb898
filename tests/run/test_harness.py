"""The harness end to end: a sweep file in, Parquet out, on one node and on two.

Real Ray, real RLlib, real Tune, real Parquet; small budgets so the whole file runs in a
few minutes on 2 cores.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.dataset as ds
import pytest
import yaml

from memsweep.spec import parse_study
from memsweep.store import open_results
from memsweep.testing.raycluster import two_node_cluster, two_node_sweep

pytestmark = pytest.mark.slow

FOUR_FACTORS = {
    "name": "four",
    "env": "CartPole-v1",
    "factors": {
        "replay_capacity": [2000, 4000],
        "model": ["16", "64,64"],
        "num_workers": [0, 1],
        "framework": ["torch", "tf2"],
    },
    "search": {"design": "one_at_a_time"},
    "stop": {"iterations": 2},
    "training": {"learning_starts": 200},
    "sampling": {"flush_interval_s": 1.0},
    # Two trials at once where two fit (the env-runner trial needs 1.1 CPUs, so it runs
    # alone): nothing here compares speed, and one trial leaves a core of two idle.
    "resources": {"max_concurrent_trials": 2},
}


def test_memsweep_run_writes_parquet_for_trials_that_differ_in_all_four_factors(
    tmp_path: Path,
) -> None:
    # GIVEN a sweep file that varies every factor, with both frameworks
    sweep = tmp_path / "four.yaml"
    storage = tmp_path / "results" / "four"
    sweep.write_text(yaml.safe_dump({**FOUR_FACTORS, "storage": str(storage)}))
    # WHEN the user runs it
    run = subprocess.run(
        [sys.executable, "-m", "memsweep", "run", str(sweep)],
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    # THEN the summary names each trial with its peak memory and where the Parquet is
    assert "peak (Σ PSS)" in run.stdout and "stopped by" in run.stdout
    assert f"Parquet: {storage}" in run.stdout
    # AND the trials table has every point, finished, with what RLlib built
    trials = pd.read_parquet(storage / "trials.parquet")
    assert len(trials) == 5
    assert set(trials["status"]) == {"terminated"}
    assert set(trials["framework"]) == {"torch", "tf2"}
    assert set(trials["replay_capacity"]) == {2000, 4000}
    assert set(trials["num_workers"]) == {0, 1}
    assert set(trials["model"]) == {"16", "64x64"}
    assert (trials["built_replay_capacity"] == trials["replay_capacity"]).all()
    assert (trials["built_num_env_runners"] == trials["num_workers"]).all()
    assert (trials["model_params"] > 0).all()
    assert set(trials["api_stack"]) == {"new", "old"}
    # AND each trial's processes were sampled: a trainable, and one env runner per worker
    con = duckdb.connect()
    con.register("samples", ds.dataset(storage / "samples", format="parquet"))
    per_trial = dict(
        con.execute(
            "SELECT trial_id, COUNT(DISTINCT pid) FILTER (WHERE role = 'env_runner') "
            "FROM samples WHERE trial_id IS NOT NULL GROUP BY trial_id"
        ).fetchall()
    )
    roles = {
        r[0]
        for r in con.execute(
            "SELECT DISTINCT role FROM samples WHERE trial_id IS NOT NULL"
        ).fetchall()
    }
    assert "trainable" in roles
    for trial in trials.itertuples():
        assert per_trial.get(trial.trial_id, 0) == trial.num_workers, trial
    # AND memory figures are plausible: every trial process holds at least 50 MB at its
    # peak (single samples can be lower while a process starts or exits)
    low = con.execute(
        "SELECT COUNT(*) FROM (SELECT trial_id, pid, MAX(rss_bytes) AS rss FROM samples "
        "WHERE trial_id IS NOT NULL AND role IN ('trainable', 'env_runner') "
        "GROUP BY trial_id, pid) WHERE rss < 50e6"
    ).fetchall()
    assert low == [(0,)]
    # AND progress rows give env steps per trial
    progress = pd.read_parquet(storage / "progress")
    assert set(progress["trial_id"]) == set(trials["trial_id"])
    assert (progress.groupby("trial_id")["env_steps"].max() > 0).all()
    # AND the study and versions travel with the data
    assert (storage / "study.yaml").exists() and (storage / "versions.json").exists()


def test_on_two_nodes_both_are_sampled_and_env_runners_go_to_their_trial(
    tmp_path: Path, ray_auth_disabled: None
) -> None:
    import ray

    from memsweep.run.sweep import run_study

    # GIVEN a two-node cluster (two raylets on this machine) and two concurrent trials
    with two_node_cluster({"TF_USE_LEGACY_KERAS": "1"}):
        study = parse_study(two_node_sweep("two-nodes", 3, tmp_path / "two"))
        # WHEN the sweep runs on that cluster
        outcome = run_study(study)
        node_ids = {n["NodeID"] for n in ray.nodes()}
    assert outcome.num_errors == 0
    results = open_results(tmp_path / "two")
    samples = results.table("samples", columns=["node_id", "pid", "trial_id", "role"]).to_pandas()
    # THEN both nodes were sampled
    assert set(samples["node_id"]) == node_ids
    assert set(results.table("nodes").column("node_id").to_pylist()) == node_ids
    # AND each trial's env-runner processes are attributed to that trial, one per worker
    trials = results.table("trials").to_pandas().set_index("trial_id")
    runners = samples[samples["role"] == "env_runner"].groupby("trial_id")["pid"].nunique()
    for trial_id, trial in trials.iterrows():
        assert runners.get(trial_id, 0) == trial["num_workers"]
    # AND the two trials ran on different nodes (the head has room for one trainable only)
    trainable_nodes = samples[samples["role"] == "trainable"].groupby("trial_id")["node_id"].first()
    assert trainable_nodes.nunique() == 2

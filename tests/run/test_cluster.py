"""Beyond one machine: nodes that come and go during a sweep.

Real Ray throughout: ``ray.cluster_utils.Cluster`` (raylets on this machine, each its own
node id) with ``memsweep run --address`` as the driver, read back only from what memsweep
wrote in Parquet. A driver killed half-way and resumed is in
``tests/collect/test_faults.py`` (``test_a_sigkilled_driver_…``).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memsweep.store import open_results
from memsweep.testing.raycluster import (
    TINY_SWEEP,
    clean_env,
    driving,
    free_ports,
    nodes_sampled,
    trial_statuses,
    wait_until,
    write_sweep,
)

pytestmark = pytest.mark.slow


def _start_run(*args: str, log: Path) -> subprocess.Popen[str]:
    """``python -m memsweep run ARGS`` in the background, its output in ``log``."""
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "memsweep", "run", *args],
            env=clean_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )


def _capacities(*values: int) -> dict[str, Any]:
    return {**TINY_SWEEP["factors"], "replay_capacity": list(values)}


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A head with 2 CPUs, where the trials run; every node listens on loopback only."""
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    # Node IP 127.0.0.1 (Ray's one-machine mode) for the nodes started here and for the
    # driver, which inherits the variable.
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    # No token auth: the drivers these tests start get a clean environment (raycluster's
    # clean_env), so the cluster must not inherit RAY_AUTH_MODE from an earlier ray.init
    # in this process (Ray 2.60 sets it there when ~/.ray/auth_token exists).
    for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)
    dashboard, agent = free_ports(2)
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 2,
            "include_dashboard": True,
            "dashboard_host": "127.0.0.1",
            "dashboard_port": dashboard,
            "dashboard_agent_listen_port": agent,
        },
    )
    try:
        yield cluster
    finally:
        cluster.shutdown()


def test_a_node_that_joins_and_one_that_leaves_mid_sweep_are_both_sampled(
    cluster: Any, tmp_path: Path
) -> None:
    # GIVEN a head, a second node (no CPUs: no trial runs there, so removing it fails
    # none), and a two-trial sweep driven from the head
    leaving = cluster.add_node(num_cpus=0)
    head_id, leaving_id = cluster.head_node.node_id, leaving.node_id
    sweep = write_sweep(tmp_path, name="nodes", factors=_capacities(1000, 2000))
    storage = tmp_path / "results"
    process = _start_run(
        str(sweep), "--storage", str(storage), "--address", cluster.address, log=tmp_path / "log"
    )
    with driving(process):
        # WHEN, once the first trial runs and the second node has been sampled, a third
        # node joins and the second one dies (its processes killed, no goodbye)
        wait_until(lambda: trial_statuses(storage), 300, "no trial started")
        wait_until(lambda: leaving_id in nodes_sampled(storage), 120, "node 2 never sampled")
        joined_at = time.time()
        joining = cluster.add_node(num_cpus=0)
        cluster.remove_node(leaving, allow_graceful=False)
        wait_until(
            lambda: joining.node_id in nodes_sampled(storage), 60, "the new node never sampled"
        )
        sampled_after_s = time.time() - joined_at
        rc = process.wait(timeout=600)
    log = (tmp_path / "log").read_text()
    # THEN the sweep completes, every trial finished
    assert rc == 0, log[-5000:]
    assert set(trial_statuses(storage).values()) == {"terminated"}
    assert len(trial_statuses(storage)) == 2
    # AND samples come from all three nodes; the new one within seconds of joining
    results = open_results(storage)
    assert {head_id, leaving_id, joining.node_id} <= nodes_sampled(storage)
    assert sampled_after_s < 30
    # AND the node that left is recorded dead, its samples kept; the new one alive
    states = {n["node_id"]: n["state"] for n in results.table("nodes").to_pylist()}
    assert states[leaving_id] == "dead"
    assert states[joining.node_id] == "alive"
    events = results.table("events", columns=["kind", "node_id"]).to_pylist()
    assert {"kind": "node_removed", "node_id": leaving_id} in events
    assert {"kind": "node_added", "node_id": joining.node_id} in events

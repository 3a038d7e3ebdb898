"""Shared fixtures: a real local Ray, a real two-node cluster, results folders."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Every process the tests start (Ray workers inherit the driver's environment on a
# local cluster) must see these before TensorFlow or RLlib is imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

REPO = Path(__file__).resolve().parents[1]
WORKER_ENV = {"env_vars": {"TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}}


@pytest.fixture(scope="module")
def local_ray() -> Iterator[object]:
    """A real Ray on this machine: 2 CPUs, dashboard on loopback (the state API needs it)."""
    import ray

    ray.shutdown()
    context = ray.init(
        # A Ray of our own: never join a cluster another program started with `ray start`.
        address="local",
        num_cpus=2,
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        runtime_env=WORKER_ENV,
        log_to_driver=False,
    )
    yield context
    ray.shutdown()


@pytest.fixture
def results_dir(tmp_path: Path) -> Path:
    return tmp_path / "results"

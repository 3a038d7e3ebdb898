"""``memsweep validate/run --address`` check the sweep against the cluster's CPUs and
memory (its alive nodes as the GCS reports them), as they do against this machine.
Real ``ray start --head``; each case asserts the one line the user sees."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from memsweep.testing.raycluster import Head, clean_env, ray_head

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def head() -> Iterator[Head]:
    """A one-node cluster with 1 CPU (token auth on, loopback only)."""
    with ray_head(num_cpus=1) as started:
        yield started


def memsweep(head: Head, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = clean_env(
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN_PATH=str(head.token_path),
        # As the head: a one-machine Ray on 127.0.0.1. Without it ray.init turns the
        # 127.0.0.1 of --address into the machine's outward IP, where the loopback-only
        # GCS does not answer, and waits until the subprocess times out.
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
    )
    return subprocess.run(
        [sys.executable, "-m", "memsweep", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr[-3000:]
    return lines[0]


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_trial_that_needs_more_cpus_than_the_cluster_has_is_refused_in_one_line(
    head: Head, command: str, tmp_path: Path
) -> None:
    # GIVEN a 1-CPU cluster and a sweep whose trial asks for 1 + 2 × 1 CPUs
    sweep = tmp_path / "cpus.yaml"
    sweep.write_text(
        "name: cpus\nfactors: {num_workers: [2]}\nresources: {cpus_per_env_runner: 1}\n"
        f"storage: {tmp_path / 'results'}\n"
    )
    # WHEN it is validated (or run) against the cluster
    result = memsweep(head, command, str(sweep), "--address", head.gcs_address, cwd=tmp_path)
    # THEN one line says the trial cannot be placed there, exit 2, nothing written
    assert result.returncode == 2, result.stderr[-3000:]
    assert one_line(result) == (
        f"memsweep: {sweep}: resources: a trial with 2 env runners asks for 3 CPUs "
        "(cpus_per_trainable 1 + 2 × cpus_per_env_runner 1) but the cluster at "
        f"{head.gcs_address} has 1: Ray would never place it; lower cpus_per_env_runner "
        "or num_workers"
    )
    assert not (tmp_path / "results").exists()


def test_a_trial_that_needs_more_memory_than_the_cluster_can_place_is_refused(
    head: Head, tmp_path: Path
) -> None:
    # GIVEN 64 env runners at 0.01 CPU each: they fit the CPU, not Ray's memory there
    sweep = tmp_path / "memory.yaml"
    sweep.write_text(
        "name: m\nfactors: {num_workers: [64]}\nresources: {cpus_per_trainable: 0.3, cpus_per_env_runner: 0.01}\n"
    )
    result = memsweep(head, "validate", str(sweep), "--address", head.gcs_address, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    line = one_line(result)
    assert re.fullmatch(
        rf"memsweep: {re.escape(str(sweep))}: memory: the largest trial needs at least 25\.8 GB "
        r"\(driver 890 MB \+ trainable 470 MB \+ 64 env runners × 382 MB\) but the cluster at "
        rf"{re.escape(head.gcs_address)} has [\d.]+ GB: lower factors\.num_workers or "
        r"factors\.replay_capacity",
        line,
    ), line


def test_a_sweep_that_fits_the_cluster_validates_and_a_wrong_address_is_one_line(
    head: Head, tmp_path: Path
) -> None:
    sweep = tmp_path / "ok.yaml"
    sweep.write_text("name: ok\nfactors: {num_workers: [0]}\nstop: {iterations: 1}\n")
    fits = memsweep(head, "validate", str(sweep), "--address", head.gcs_address, cwd=tmp_path)
    assert fits.returncode == 0, fits.stderr[-3000:]
    assert "study 'ok'" in fits.stdout
    # a cluster that is not there: exit 4, one line naming the address and the fix
    nowhere = memsweep(head, "validate", str(sweep), "--address", "127.0.0.1:9", cwd=tmp_path)
    assert nowhere.returncode == 4, nowhere.stderr[-3000:]
    line = one_line(nowhere)
    assert line.startswith("memsweep: Cannot reach the Ray cluster at 127.0.0.1:9: ")
    assert line.endswith(
        "Check --address (host:port of its GCS, or ray://…) and that the cluster is up"
    )

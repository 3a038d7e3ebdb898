"""Helpers for the cluster tests: a tiny sweep file, real Ray heads, memsweep subprocesses.

Everything listens on 127.0.0.1 on ports picked free at the time. A head started here is
stopped by the ids of its own processes (those whose command line names its private
temp dir, and their descendants), never with ``ray stop``, which would stop every Ray on
the machine, other people's included.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psutil
import pyarrow.compute as pc
import yaml

from memsweep.errors import DataError
from memsweep.store import Results, open_results

REPO = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
T = TypeVar("T")

TINY_SWEEP: dict[str, Any] = {
    "name": "tiny",
    "algorithm": "DQN",
    "env": "CartPole-v1",
    "factors": {
        "replay_capacity": [1000],
        "model": [[16]],
        "num_workers": [0],
        "framework": ["torch"],
    },
    "stop": {"iterations": 2},
    "sampling": {"flush_interval_s": 1.0},
}
"""About 20 s per trial on 2 cores: one DQN on CartPole, 2 iterations."""


def write_sweep(folder: Path, **changes: Any) -> Path:
    """A sweep file in ``folder``: :data:`TINY_SWEEP` with top-level keys replaced."""
    data = {**TINY_SWEEP, **changes}
    path = folder / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# -- reading a sweep's results while it runs --------------------------------------------


def results_or_none(storage: Path) -> Results | None:
    try:
        return open_results(storage)
    except DataError:
        return None


def nodes_sampled(storage: Path) -> set[str]:
    results = results_or_none(storage)
    if results is None:
        return set()
    return set(pc.unique(results.table("samples", columns=["node_id"])["node_id"]).to_pylist())


def trial_statuses(storage: Path) -> dict[str, str]:
    results = results_or_none(storage)
    if results is None:
        return {}
    trials = results.table("trials", columns=["trial_id", "status"]).to_pylist()
    return {row["trial_id"]: row["status"] for row in trials}


def trials_with_progress(storage: Path) -> set[str]:
    """Trials with at least one Tune result."""
    results = results_or_none(storage)
    if results is None:
        return set()
    return set(results.table("progress", columns=["trial_id"])["trial_id"].to_pylist())


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free on 127.0.0.1 right now."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment for a child: no inherited cluster address or token
    settings, memsweep's venv first on PATH (Ray jobs run ``python`` from PATH)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key
        not in {
            "RAY_ADDRESS",
            "RAY_API_SERVER_ADDRESS",
            "RAY_AUTH_MODE",
            "RAY_AUTH_TOKEN",
            "RAY_AUTH_TOKEN_PATH",
        }
    }
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("TF_USE_LEGACY_KERAS", "1")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.update(extra)
    return env


def _run_module(
    module: str,
    args: tuple[str | Path, ...],
    env: Mapping[str, str] | None,
    cwd: Path | None,
    timeout: float,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        env=dict(env) if env is not None else clean_env(),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def memsweep(
    *args: str | Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 900,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m memsweep ARGS`` to the end in ``cwd`` (stdout and stderr captured).

    ``env`` defaults to :func:`clean_env`; ``timeout`` is in seconds
    (:class:`subprocess.TimeoutExpired` past it).
    """
    return _run_module("memsweep", args, env, cwd, timeout)


def analyze(
    *args: str | Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m memsweep.analyze ARGS`` as the user does (as :func:`memsweep`)."""
    return _run_module("memsweep.analyze", args, env, cwd, timeout)


def wait_until(what: Callable[[], T], timeout: float, message: str, every: float = 1.0) -> T:
    """Poll ``what`` until it returns something truthy; fail with ``message`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s: {message}")
        time.sleep(every)


def kill_tree(processes: list[psutil.Process], grace_s: float = 2.0) -> None:
    """SIGTERM these processes, SIGKILL what is left after ``grace_s``.

    The grace is short because waiting longer buys nothing: of a ``ray start`` head's
    processes SIGTERMed together, the raylet, the GCS, the autoscaler monitor and the
    runtime-env agent were all still running 10 s later (Ray 2.60, measured), so a longer
    grace only delayed the SIGKILL; a test's Ray leaves nothing behind that needs it.
    """
    for process in processes:
        with suppress(psutil.Error):
            process.terminate()
    _, alive = psutil.wait_procs(processes, timeout=grace_s)
    for process in alive:
        with suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(alive, timeout=5)


def processes_naming(*markers: str) -> list[psutil.Process]:
    """Processes whose command line contains every one of ``markers``, with all their
    descendants."""
    me = os.getpid()
    found: dict[int, psutil.Process] = {}
    for process in psutil.process_iter(["pid", "cmdline"]):
        try:
            command = " ".join(process.info["cmdline"] or ())
            if process.pid != me and all(marker in command for marker in markers):
                found[process.pid] = process
                for child in process.children(recursive=True):
                    found[child.pid] = child
        except psutil.Error:
            continue
    return list(found.values())


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return []


@dataclass(frozen=True)
class Head:
    """A ``ray start --head`` on loopback, with token auth on."""

    dashboard: str
    """``http://127.0.0.1:PORT``."""
    token_path: Path
    """The head's token file (``RAY_AUTH_TOKEN_PATH`` of the head and its jobs)."""
    temp_dir: Path
    gcs_address: str = ""
    """``127.0.0.1:PORT`` of its GCS, what ``ray.init(address=…)`` takes."""


@contextmanager
def ray_head(num_cpus: int = 2, env: Mapping[str, str] | None = None) -> Iterator[Head]:
    """Start a real head with ``ray start --head`` and stop exactly its processes after.

    The temp dir is short (``/tmp/msh…``): Ray's socket paths under it must stay below
    the 107-byte limit of a Unix socket name, which a pytest ``tmp_path`` can exceed.
    """
    temp_dir = Path(tempfile.mkdtemp(prefix="msh", dir="/tmp"))
    token_path = temp_dir / "token"
    token_path.write_text(uuid.uuid4().hex + "\n")
    gcs, dashboard, client, agent, agent_grpc, env_agent, metrics = free_ports(7)
    head_env = clean_env(
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN_PATH=str(token_path),
        # A one-machine Ray: node IP 127.0.0.1, so its gRPC servers listen on loopback
        # only (otherwise Ray 2.60 takes the machine's outward IP, --node-ip-address or not).
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
        **(env or {}),
    )
    command = [
        str(BIN / "ray"), "start", "--head",
        "--node-ip-address", "127.0.0.1",
        "--port", str(gcs),
        "--dashboard-host", "127.0.0.1",
        "--dashboard-port", str(dashboard),
        "--ray-client-server-port", str(client),
        "--dashboard-agent-listen-port", str(agent),
        "--dashboard-agent-grpc-port", str(agent_grpc),
        "--runtime-env-agent-port", str(env_agent),
        "--metrics-export-port", str(metrics),
        "--num-cpus", str(num_cpus),
        "--temp-dir", str(temp_dir),
        "--disable-usage-stats",
    ]  # fmt: skip
    try:
        started = subprocess.run(
            command, env=head_env, capture_output=True, text=True, timeout=180, check=False
        )
        assert started.returncode == 0, f"ray start failed:\n{started.stdout}\n{started.stderr}"
        yield Head(f"http://127.0.0.1:{dashboard}", token_path, temp_dir, f"127.0.0.1:{gcs}")
    finally:
        # The Ray Client server is the one process of the head that does not name the
        # temp dir; it is known by the port given to it.
        client_server = processes_naming("ray.util.client.server", f"--port={client} ")
        kill_tree(processes_naming(str(temp_dir)) + client_server)
        shutil.rmtree(temp_dir, ignore_errors=True)


class Driver:
    """A ``memsweep run`` subprocess, and everything it starts (e.g. an embedded Ray)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self._started: dict[int, psutil.Process] = {}

    def _remember(self) -> None:
        for child in descendants(self.process.pid):
            self._started[child.pid] = child

    def crash(self) -> None:
        """SIGKILL the driver alone, as a crash would."""
        self._remember()
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=60)

    def cleanup(self) -> None:
        """Kill the driver if it still runs, then whatever it started that is left."""
        if self.process.poll() is None:
            self.crash()
        kill_tree([p for p in self._started.values() if p.is_running()])


@contextmanager
def driving(process: subprocess.Popen[str]) -> Iterator[Driver]:
    """``process`` as a :class:`Driver`, cleaned up after the block whatever happens."""
    driver = Driver(process)
    try:
        yield driver
    finally:
        driver.cleanup()


def free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


AUTH_VARIABLES = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


@contextmanager
def explicit_auth(mode: str = "disabled") -> Iterator[None]:
    """Ray's auth mode set explicitly (``RAY_AUTH_MODE``) while an in-process Ray runs,
    and this process's auth variables as they were afterwards.

    Ray 2.60's ``ray.init`` turns token auth on for a new local cluster when the mode is
    unset, and writes ``RAY_AUTH_MODE=token`` into this process's environment (with
    ``~/.ray/auth_token`` present), so whichever test started Ray first decided the
    mode of every later one. With the mode set, Ray leaves the variable alone; restoring
    it keeps one test's mode out of the next (clusters started in-process, like the
    two-node harness test's, set theirs the same way)."""
    saved = {key: os.environ.get(key) for key in AUTH_VARIABLES}
    for key in AUTH_VARIABLES:
        os.environ.pop(key, None)
    os.environ["RAY_AUTH_MODE"] = mode
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def two_node_sweep(name: str, iterations: int, storage: Path) -> dict[str, Any]:
    """A sweep for :func:`two_node_cluster`: two concurrent DQN trials (1 and 2 env runners
    at a tenth of a CPU, the trainable at 0.7) that cannot share one 1-CPU node."""
    return {
        "name": name,
        "env": "CartPole-v1",
        "factors": {
            "replay_capacity": [1000],
            "model": ["16"],
            "num_workers": [1, 2],
            "framework": ["torch"],
        },
        "stop": {"iterations": iterations},
        "training": {"learning_starts": 100},
        "resources": {
            "cpus_per_trainable": 0.7,
            "cpus_per_env_runner": 0.1,
            "max_concurrent_trials": 2,
        },
        "sampling": {"flush_interval_s": 1.0},
        "storage": str(storage),
    }


@contextmanager
def two_node_cluster(env_vars: Mapping[str, str], *, log_to_driver: bool = True) -> Iterator[Any]:
    """A fresh in-process two-node Ray (``ray.cluster_utils.Cluster``: two raylets of 1 CPU
    on this machine, the head's dashboard on a free loopback port) with this process
    connected to it (workers get ``env_vars``); yields the ``Cluster``, shut down after."""
    import ray
    from ray.cluster_utils import Cluster

    ray.shutdown()
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "include_dashboard": True,
            "dashboard_host": "127.0.0.1",
            # A Cluster's head does not look further when 8265 is taken (by someone else's
            # Ray on this machine): give it a free port.
            "dashboard_port": free_port(),
        },
    )
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray.init(
            address=cluster.address,
            runtime_env={"env_vars": dict(env_vars)},
            log_to_driver=log_to_driver,
        )
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()  # type: ignore[no-untyped-call]

"""The per-node sampler: a small Ray actor that reads every Ray process on its node.

One :class:`NodeSampler` runs on each node (pinned there with a hard node-affinity
strategy, zero CPUs so it never takes a trial's place). A background thread samples at
``interval_s``: ``/proc/PID/status`` for every process each round, USS/PSS every
``full_interval_s``. It keeps rows in memory until the driver's collector calls
:meth:`NodeSampler.drain`; the sampler itself never writes files, so nodes that cannot
see the driver's disk are covered too.

Which processes: the node's raylet and everything below it (Ray workers, actors, their
child processes, the dashboard and runtime-env agents); on the head node also the GCS,
dashboard and monitor processes of the same Ray session; and the driver, when it runs
on this node. The sampler only records pids and process titles; the collector decides
which trial and role each belongs to (it has the cluster-wide actor table).

Trainables announce themselves with :func:`register_trial`, which tells the sampler of
their node which placement group is theirs: that is how a trial's env runners, learners
and their children are attributed to it from the first sample on.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psutil
import pyarrow as pa

from memsweep.collect import probe
from memsweep.store import NODE_SAMPLES, to_table

SAMPLER_NAME_PREFIX = "memsweep_sampler_"
"""Named actors ``memsweep_sampler_<node_id>`` in the sweep's namespace."""

_RAW_COLUMNS = (
    "ts",
    "pid",
    "ppid",
    "create_time",
    "name",
    "rss_bytes",
    "hwm_bytes",
    "swap_bytes",
    "rss_anon_bytes",
    "rss_file_bytes",
    "rss_shmem_bytes",
    "uss_bytes",
    "pss_bytes",
    "gpu_bytes",
    "cpu_time_s",
    "system",
)

RAW_SAMPLES = pa.schema(
    [
        pa.field("ts", pa.timestamp("us", tz="UTC")),
        pa.field("pid", pa.int32()),
        pa.field("ppid", pa.int32()),
        pa.field("create_time", pa.float64()),
        pa.field("name", pa.string()),
        pa.field("rss_bytes", pa.int64()),
        pa.field("hwm_bytes", pa.int64()),
        pa.field("swap_bytes", pa.int64()),
        pa.field("rss_anon_bytes", pa.int64()),
        pa.field("rss_file_bytes", pa.int64()),
        pa.field("rss_shmem_bytes", pa.int64()),
        pa.field("uss_bytes", pa.int64()),
        pa.field("pss_bytes", pa.int64()),
        pa.field("gpu_bytes", pa.int64()),
        pa.field("cpu_time_s", pa.float64()),
        pa.field("system", pa.string()),
    ]
)
"""What a sampler hands over: samples without trial and role (the collector adds them).
``system`` names a Ray system process (``raylet``, ``gcs``, ``dashboard``, ``driver``,
``memsweep``) or is null for workers."""


@dataclass(frozen=True)
class SamplerConfig:
    """What a sampler needs to know; built by the collector from the study."""

    interval_s: float = 0.1
    """Seconds between two rounds (RSS, swap, peak RSS of every process)."""
    full_interval_s: float = 1.0
    """Seconds between two reads of USS/PSS; also how often new processes are found."""
    driver_pid: int | None = None
    """The sweep driver's pid, recorded as role ``driver`` when it runs on this node."""
    driver_node_id: str | None = None
    max_buffered_rounds: int = 36_000
    """Rounds kept when nobody drains (an hour at 10 Hz); the oldest are dropped first
    and the drop is reported as a gap."""


@dataclass
class _Tracked:
    process: psutil.Process
    create_time: float
    name: str
    system: str | None


@dataclass
class _Buffer:
    columns: dict[str, list[Any]] = field(default_factory=lambda: {c: [] for c in _RAW_COLUMNS})
    node_rows: list[dict[str, Any]] = field(default_factory=list)
    rounds: int = 0
    dropped_rounds: int = 0


def _name_of(process: psutil.Process) -> str:
    """The process title: ``ray::ClassName.method`` for Ray workers, else the exe name."""
    try:
        cmdline = process.cmdline()
        if cmdline and cmdline[0].startswith("ray::"):
            return str(cmdline[0]).strip()
        return str(process.name())
    except (psutil.Error, OSError):
        return "?"


class SamplerCore:
    """The sampling logic without Ray, so that it can be tested and benchmarked alone.

    **Thread safety.** :meth:`run_round` runs on the sampling thread; :meth:`drain` and
    :meth:`register` on the actor's method thread. One lock guards the buffer.
    """

    def __init__(self, config: SamplerConfig, node_id: str, is_head: bool) -> None:
        self.config = config
        self.node_id = node_id
        self.is_head = is_head
        self._lock = threading.Lock()
        self._buffer = _Buffer()
        self._tracked: dict[int, _Tracked] = {}
        self._registrations: list[dict[str, Any]] = []
        self._last_full = 0.0
        self._gpu = probe.GpuProbe()
        self._own_pid = os.getpid()
        self._raylet_pid = self._find_raylet()
        self._session_marker = self._find_session_marker()

    # -- discovery -------------------------------------------------------------------

    def _find_raylet(self) -> int | None:
        """Ray workers are the raylet's children: the sampler's own parent is it."""
        try:
            for parent in psutil.Process(self._own_pid).parents():
                if parent.name() == "raylet":
                    return int(parent.pid)
        except psutil.Error:
            pass
        return None

    def _find_session_marker(self) -> str | None:
        """The session folder name, which the head's GCS and dashboard carry in argv."""
        if self._raylet_pid is None:
            return None
        try:
            for arg in psutil.Process(self._raylet_pid).cmdline():
                if "session_" in arg:
                    start = arg.index("session_")
                    return str(arg[start:].split("/", 1)[0])
        except psutil.Error:
            pass
        return None

    def discover(self) -> dict[int, str | None]:
        """pid → system label for every process to sample on this node now."""
        parents: dict[int, int] = {}
        names: dict[int, str] = {}
        for proc in psutil.process_iter(["pid", "ppid", "name"]):
            parents[proc.info["pid"]] = proc.info["ppid"] or 0
            names[proc.info["pid"]] = proc.info["name"] or ""
        children: dict[int, list[int]] = {}
        for pid, ppid in parents.items():
            children.setdefault(ppid, []).append(pid)

        def subtree(root: int) -> Iterable[int]:
            stack = [root]
            while stack:
                pid = stack.pop()
                yield pid
                stack.extend(children.get(pid, ()))

        found: dict[int, str | None] = {}
        if self._raylet_pid is not None and self._raylet_pid in parents:
            for pid in subtree(self._raylet_pid):
                found[pid] = None
            found[self._raylet_pid] = "raylet"
        if self.is_head and self._session_marker:
            raylets = {pid for pid, name in names.items() if name == "raylet"}
            under_raylet: set[int] = set()
            for raylet in raylets:
                under_raylet.update(subtree(raylet))
            for pid, name in names.items():
                if pid in under_raylet or pid in found or name == "raylet":
                    continue
                if not (name in {"gcs_server", "python", "python3"} or name.startswith("ray")):
                    continue
                try:
                    argv = " ".join(psutil.Process(pid).cmdline())
                except psutil.Error:
                    continue
                if self._session_marker not in argv and "--gcs-address" not in argv:
                    continue
                if "--gcs-address" in argv and self._session_marker not in argv:
                    # Another cluster's helper process on the same machine.
                    continue
                label = "gcs" if name == "gcs_server" else "ray_system"
                for sub in subtree(pid):
                    found.setdefault(sub, label)
        driver = self.config.driver_pid
        if driver and self.config.driver_node_id == self.node_id and driver in parents:
            found[driver] = "driver"
        found[self._own_pid] = "memsweep"
        return found

    def _sync_tracked(self, pids: dict[int, str | None]) -> None:
        for pid in list(self._tracked):
            if pid not in pids:
                del self._tracked[pid]
        for pid, system in pids.items():
            tracked = self._tracked.get(pid)
            if tracked is not None:
                tracked.system = system
                # Ray workers rename themselves as they start an actor or a task.
                tracked.name = _name_of(tracked.process)
                continue
            try:
                process = psutil.Process(pid)
                self._tracked[pid] = _Tracked(
                    process=process,
                    create_time=float(process.create_time()),
                    name=_name_of(process),
                    system=system,
                )
            except psutil.Error:
                continue

    # -- sampling ----------------------------------------------------------------------

    def run_round(self, now: float | None = None) -> int:
        """Sample every tracked process once; returns how many were read."""
        start = time.perf_counter()
        now = time.time() if now is None else now
        full = now - self._last_full >= self.config.full_interval_s
        if full or not self._tracked:
            self._sync_tracked(self.discover())
            self._last_full = now
        gpu = self._gpu.per_pid() if self._gpu.available else {}
        rows: dict[str, list[Any]] = {c: [] for c in _RAW_COLUMNS}
        gone: list[int] = []
        for pid, tracked in self._tracked.items():
            status = probe.read_status(pid)
            if status is None:
                gone.append(pid)
                continue
            uss = pss = None
            if full:
                memory = probe.read_full(tracked.process)
                if memory is not None:
                    uss, pss = memory.uss_bytes, memory.pss_bytes
            cpu = None
            if full:
                try:
                    times = tracked.process.cpu_times()
                    cpu = float(times.user + times.system)
                except psutil.Error:
                    cpu = None
            rows["ts"].append(int(now * 1_000_000))
            rows["pid"].append(pid)
            rows["ppid"].append(status.ppid)
            rows["create_time"].append(tracked.create_time)
            rows["name"].append(tracked.name)
            rows["rss_bytes"].append(status.rss_bytes)
            rows["hwm_bytes"].append(status.hwm_bytes)
            rows["swap_bytes"].append(status.swap_bytes)
            rows["rss_anon_bytes"].append(status.rss_anon_bytes)
            rows["rss_file_bytes"].append(status.rss_file_bytes)
            rows["rss_shmem_bytes"].append(status.rss_shmem_bytes)
            rows["uss_bytes"].append(uss)
            rows["pss_bytes"].append(pss)
            rows["gpu_bytes"].append(gpu.get(pid) if self._gpu.available else None)
            rows["cpu_time_s"].append(cpu)
            rows["system"].append(tracked.system)
        for pid in gone:
            self._tracked.pop(pid, None)
        node = probe.read_node(self._raylet_pid)
        node_row = {
            "ts": int(now * 1_000_000),
            "node_id": self.node_id,
            "total_bytes": node.total_bytes,
            "available_bytes": node.available_bytes,
            "used_bytes": node.used_bytes,
            "shmem_bytes": node.shmem_bytes,
            "swap_used_bytes": node.swap_used_bytes,
            "cgroup_limit_bytes": node.cgroup_limit_bytes,
            "cgroup_usage_bytes": node.cgroup_usage_bytes,
            "gpu_used_bytes": self._gpu.total_used(),
            "num_processes": len(rows["pid"]),
            "sample_cost_s": time.perf_counter() - start,
        }
        with self._lock:
            buffer = self._buffer
            for column, values in rows.items():
                buffer.columns[column].extend(values)
            buffer.node_rows.append(node_row)
            buffer.rounds += 1
            if buffer.rounds > self.config.max_buffered_rounds:
                self._drop_oldest_locked()
        return len(rows["pid"])

    def _drop_oldest_locked(self) -> None:
        buffer = self._buffer
        first_ts = buffer.columns["ts"][0] if buffer.columns["ts"] else None
        cut = sum(1 for ts in buffer.columns["ts"] if ts == first_ts)
        for column in buffer.columns.values():
            del column[:cut]
        del buffer.node_rows[:1]
        buffer.rounds -= 1
        buffer.dropped_rounds += 1

    def register(self, trial_id: str, placement_group_id: str | None, pid: int) -> None:
        with self._lock:
            self._registrations.append(
                {
                    "trial_id": trial_id,
                    "placement_group_id": placement_group_id,
                    "pid": pid,
                    "node_id": self.node_id,
                    "ts": time.time(),
                }
            )

    def drain(self) -> dict[str, Any]:
        """Everything sampled since the last drain, as Arrow tables plus registrations."""
        with self._lock:
            buffer, self._buffer = self._buffer, _Buffer()
            registrations, self._registrations = self._registrations, []
        samples = pa.Table.from_pydict(buffer.columns, schema=RAW_SAMPLES)
        nodes = to_table(buffer.node_rows, NODE_SAMPLES)
        return {
            "node_id": self.node_id,
            "samples": samples,
            "node_samples": nodes,
            "registrations": registrations,
            "dropped_rounds": buffer.dropped_rounds,
        }

    def close(self) -> None:
        self._gpu.close()


class NodeSampler:
    """The Ray actor around :class:`SamplerCore`: a sampling thread and a drain method."""

    def __init__(self, config: SamplerConfig, node_id: str, is_head: bool) -> None:
        self._core = SamplerCore(config, node_id, is_head)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="memsweep-sampler", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        interval = self._core.config.interval_s
        next_at = time.monotonic()
        while not self._stop.is_set():
            # A process vanishing mid-read must never stop the sampler; the round is
            # lost and the next one goes on.
            with contextlib.suppress(Exception):
                self._core.run_round()
            next_at += interval
            delay = next_at - time.monotonic()
            if delay < 0:
                # Fell behind (a slow round or a busy core): skip, don't burst.
                next_at = time.monotonic()
                delay = 0
            self._stop.wait(delay)

    def ping(self) -> dict[str, Any]:
        return {
            "node_id": self._core.node_id,
            "pid": os.getpid(),
            "raylet_pid": self._core._raylet_pid,
        }

    def drain(self) -> dict[str, Any]:
        return self._core.drain()

    def register(self, trial_id: str, placement_group_id: str | None, pid: int) -> None:
        self._core.register(trial_id, placement_group_id, pid)

    def kernel_oom_killed(self, pid: int, create_time: float | None) -> bool | None:
        """Did this node's kernel OOM-kill ``pid`` (started at ``create_time``, epoch s)?
        None when the kernel log cannot be read here."""
        from memsweep.collect.faults import kernel_killed, read_kmsg

        started = None if create_time is None else create_time - psutil.boot_time()
        return kernel_killed(pid, started, read_kmsg())

    def stop(self) -> dict[str, Any]:
        """Stop sampling and hand over what is left."""
        self._stop.set()
        self._thread.join(timeout=5)
        last = self._core.drain()
        self._core.close()
        return last


def register_trial(trial_id: str) -> bool:
    """Tell this node's sampler that the calling process and its placement group belong
    to ``trial_id``. Called by the trainable first thing in ``setup``; returns False (and
    does nothing) when no memsweep sampler runs, e.g. outside a memsweep sweep."""
    import ray

    if not ray.is_initialized():
        return False
    context = ray.get_runtime_context()
    node_id = context.get_node_id()
    try:
        sampler = ray.get_actor(f"{SAMPLER_NAME_PREFIX}{node_id}")
    except ValueError:
        return False
    pg = context.get_placement_group_id()
    ray.get(sampler.register.remote(trial_id, pg, os.getpid()), timeout=30)
    return True

"""The per-node sampler: a small Ray actor that reads every Ray process on its node.

One :class:`NodeSampler` runs on each node (pinned there with a hard node-affinity
strategy, zero CPUs so it never takes a trial's place). A background thread samples at
``interval_s``: ``/proc/PID/status`` for every process each round (each kept open and
re-read with ``os.pread``) and the node's ``/proc/meminfo`` and cgroup usage; USS/PSS,
CPU time, process titles and new processes every ``full_interval_s`` (new processes are
found by listing ``/proc`` and reading only the new pids). It keeps rows in memory until the driver's collector calls
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
import logging
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psutil
import pyarrow as pa

from memsweep.collect import probe
from memsweep.collect.faults import KernelKill
from memsweep.store import NODE_SAMPLES, to_table

logger = logging.getLogger(__name__)

SAMPLER_NAME_PREFIX = "memsweep_sampler_"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
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


@dataclass(frozen=True)
class Registration:
    """A trainable's announcement (:func:`register_trial`): this pid and its placement
    group belong to ``trial_id``."""

    trial_id: str
    placement_group_id: str | None
    pid: int
    node_id: str
    ts: float
    """When the sampler received it, epoch seconds."""


@dataclass(frozen=True)
class SamplerDrain:
    """What one sampler hands the collector at a drain: everything since the last one."""

    node_id: str
    samples: pa.Table
    """Rows of :data:`RAW_SAMPLES`: one per process per round, without trial and role."""
    node_samples: pa.Table
    """Rows of :data:`memsweep.store.NODE_SAMPLES`: one per round."""
    registrations: tuple[Registration, ...]
    dropped_rounds: int
    """Rounds dropped because nobody drained for ``max_buffered_rounds`` rounds."""


@dataclass
class _Tracked:
    status: probe.StatusFile
    create_time: float
    name: str
    system: str | None


@dataclass
class _Buffer:
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    """One tuple per process per round, in :data:`_RAW_COLUMNS` order."""
    node_rows: list[dict[str, Any]] = field(default_factory=list)
    rounds: int = 0
    dropped_rounds: int = 0


def _name_of(title: str | None, comm: str) -> str:
    """The process title: ``ray::ClassName.method`` for Ray workers, else the executable's
    name (the kernel's 15-character ``comm``, completed from the command line)."""
    if title and title.startswith("ray::"):
        return title
    if title and len(comm) >= 15:
        base = title.split(" ", 1)[0].rsplit("/", 1)[-1]
        if base.startswith(comm):
            return base
    return comm or "?"


class _ProcessTable:
    """pid → (parent pid, name) of every process on this node, kept up to date
    incrementally: each :meth:`refresh` lists ``/proc`` and reads ``/proc/PID/stat`` of
    the new pids only."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}
        self.name: dict[int, str] = {}
        self.start_ticks: dict[int, int] = {}

    def refresh(self) -> set[int]:
        """Bring the table up to date; returns the pids that are new."""
        pids = {int(entry) for entry in os.listdir("/proc") if entry.isdigit()}  # noqa: PTH208 (hot path)
        for pid in self.parent.keys() - pids:
            self.forget(pid)
        new = set()
        for pid in pids - self.parent.keys():
            stat = probe.read_stat(pid)
            if stat is None:
                continue
            self.parent[pid], self.name[pid] = stat.ppid, stat.name
            self.start_ticks[pid] = stat.start_ticks
            new.add(pid)
        return new

    def forget(self, pid: int) -> None:
        """Drop ``pid`` (it exited, or its pid may be reused): re-read when listed again."""
        self.parent.pop(pid, None)
        self.name.pop(pid, None)
        self.start_ticks.pop(pid, None)

    def children(self) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {}
        for pid, ppid in self.parent.items():
            out.setdefault(ppid, []).append(pid)
        return out


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
        self._registrations: list[Registration] = []
        self._last_full = 0.0
        self._gpu = probe.GpuProbe()
        self._own_pid = os.getpid()
        self._boot_time = psutil.boot_time()
        self._table = _ProcessTable()
        self._system_verdict: dict[int, str | None] = {}
        self._raylet_pid = self._find_raylet()
        self._session_marker = self._find_session_marker()
        self._node = probe.NodeFiles(self._raylet_pid)

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

    def _system_label(self, pid: int, name: str) -> str | None:
        """``gcs`` or ``ray_system`` for a head-node process of this Ray session outside
        any raylet's subtree (GCS, dashboard, monitor), else ``None``; decided once per
        pid from its command line."""
        if pid in self._system_verdict:
            return self._system_verdict[pid]
        label: str | None = None
        if name in {"gcs_server", "python", "python3"} or name.startswith("ray"):
            argv = probe.read_command_line(pid)
            marker = self._session_marker or ""
            # A helper with another session's folder belongs to another cluster.
            if marker and marker in argv:
                label = "gcs" if name == "gcs_server" else "ray_system"
        self._system_verdict[pid] = label
        return label

    def discover(self) -> dict[int, str | None]:
        """pid → system label for every process to sample on this node now.

        Incremental: ``/proc`` is listed and only new pids are read (their ``stat``, and
        on the head node the command line of a candidate system process, once)."""
        for pid in self._table.refresh():
            self._system_verdict.pop(pid, None)
        for pid in list(self._system_verdict):
            if pid not in self._table.parent:
                del self._system_verdict[pid]
        parents, names = self._table.parent, self._table.name
        children = self._table.children()

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
            under_raylet: set[int] = set()
            for raylet in (pid for pid, name in names.items() if name == "raylet"):
                under_raylet.update(subtree(raylet))
            for pid, name in names.items():
                if pid in under_raylet or pid in found or name == "raylet":
                    continue
                label = self._system_label(pid, name)
                if label is None:
                    continue
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
                self._tracked.pop(pid).status.close()
        for pid, system in pids.items():
            tracked = self._tracked.get(pid)
            comm = self._table.name.get(pid, "")
            if tracked is not None:
                tracked.system = system
                # Ray workers rename themselves as they start an actor or a task.
                tracked.name = _name_of(probe.read_title(pid), comm)
                continue
            ticks = self._table.start_ticks.get(pid)
            if ticks is None:
                stat = probe.read_stat(pid)
                if stat is None:
                    continue
                ticks, comm = stat.start_ticks, stat.name
            try:
                status = probe.StatusFile(pid)
            except OSError:
                continue
            self._tracked[pid] = _Tracked(
                status=status,
                # psutil's create_time: boot time + start ticks / clock ticks per second.
                create_time=self._boot_time + ticks / _CLOCK_TICKS,
                name=_name_of(probe.read_title(pid), comm),
                system=system,
            )

    # -- sampling ----------------------------------------------------------------------

    def run_round(self, now: float | None = None) -> int:
        """Sample every tracked process once; returns how many were read."""
        start = time.perf_counter()
        now = time.time() if now is None else now
        full = now - self._last_full >= self.config.full_interval_s
        if full or not self._tracked:
            self._sync_tracked(self.discover())
            self._last_full = now
        gpu = self._gpu.per_pid() if self._gpu.available else None
        ts = int(now * 1_000_000)
        # One tuple per process in _RAW_COLUMNS order; drain() turns them into columns.
        rows: list[tuple[Any, ...]] = []
        append = rows.append
        gone: list[int] = []
        for pid, tracked in self._tracked.items():
            status = tracked.status.read_fields()
            if status is None:
                gone.append(pid)
                continue
            rss, hwm, swap, anon, file, shmem, ppid = status
            uss = pss = cpu = None
            if full:
                memory = probe.read_full_pid(pid)
                if memory is not None:
                    uss, pss = memory.uss_bytes, memory.pss_bytes
                stat = probe.read_stat(pid)
                cpu = stat.cpu_time_s if stat is not None else None
            gpu_bytes = gpu.get(pid) if gpu is not None else None
            append(
                (
                    ts,
                    pid,
                    ppid,
                    tracked.create_time,
                    tracked.name,
                    rss,
                    hwm,
                    swap,
                    anon,
                    file,
                    shmem,
                    uss,
                    pss,
                    gpu_bytes,
                    cpu,
                    tracked.system,
                )
            )
        for pid in gone:
            self._tracked.pop(pid).status.close()
            self._table.forget(pid)
        if full:
            self._node.refresh()
        node = self._node.read()
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
            "cgroup_oom_kills": node.cgroup.oom_kills if node.cgroup else None,
            "cgroup_oom_events": node.cgroup.oom_events if node.cgroup else None,
            "cgroup_max_events": node.cgroup.max_events if node.cgroup else None,
            "memory_pressure_some_avg10": node.pressure.some_avg10 if node.pressure else None,
            "memory_pressure_full_avg10": node.pressure.full_avg10 if node.pressure else None,
            "memory_pressure_some_total_us": node.pressure.some_total_us if node.pressure else None,
            "memory_pressure_full_total_us": node.pressure.full_total_us if node.pressure else None,
            "gpu_used_bytes": self._gpu.total_used(),
            "num_processes": len(rows),
            "sample_cost_s": time.perf_counter() - start,
        }
        with self._lock:
            buffer = self._buffer
            buffer.rows.extend(rows)
            buffer.node_rows.append(node_row)
            buffer.rounds += 1
            if buffer.rounds > self.config.max_buffered_rounds:
                self._drop_oldest_locked()
        return len(rows)

    def _drop_oldest_locked(self) -> None:
        buffer = self._buffer
        first_ts = buffer.rows[0][0] if buffer.rows else None
        cut = 0
        while cut < len(buffer.rows) and buffer.rows[cut][0] == first_ts:
            cut += 1
        del buffer.rows[:cut]
        del buffer.node_rows[:1]
        buffer.rounds -= 1
        buffer.dropped_rounds += 1

    def register(self, trial_id: str, placement_group_id: str | None, pid: int) -> None:
        with self._lock:
            self._registrations.append(
                Registration(
                    trial_id=trial_id,
                    placement_group_id=placement_group_id,
                    pid=pid,
                    node_id=self.node_id,
                    ts=time.time(),
                )
            )

    def drain(self) -> SamplerDrain:
        """Everything sampled since the last drain, as Arrow tables plus registrations."""
        with self._lock:
            buffer, self._buffer = self._buffer, _Buffer()
            registrations, self._registrations = self._registrations, []
        columns = list(zip(*buffer.rows, strict=True)) or [() for _ in _RAW_COLUMNS]
        samples = pa.Table.from_arrays(
            [pa.array(column, type=f.type) for column, f in zip(columns, RAW_SAMPLES, strict=True)],
            schema=RAW_SAMPLES,
        )
        nodes = to_table(buffer.node_rows, NODE_SAMPLES)
        return SamplerDrain(
            node_id=self.node_id,
            samples=samples,
            node_samples=nodes,
            registrations=tuple(registrations),
            dropped_rounds=buffer.dropped_rounds,
        )

    def close(self) -> None:
        self._gpu.close()
        self._node.close()
        for tracked in self._tracked.values():
            tracked.status.close()
        self._tracked.clear()


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

    def drain(self) -> SamplerDrain:
        return self._core.drain()

    def register(self, trial_id: str, placement_group_id: str | None, pid: int) -> None:
        self._core.register(trial_id, placement_group_id, pid)

    def kernel_oom_killed(self, pid: int, create_time: float | None) -> KernelKill:
        """Did this node's kernel OOM-kill ``pid`` (started at ``create_time``, epoch s),
        in which memory cgroup, and that cgroup's counters now
        (:func:`memsweep.collect.faults.kernel_kill`)."""
        from memsweep.collect.faults import kernel_kill, read_kmsg

        started = None if create_time is None else create_time - psutil.boot_time()
        return kernel_kill(pid, started, read_kmsg())

    def stop(self) -> SamplerDrain:
        """Stop sampling and hand over what is left."""
        self._stop.set()
        self._thread.join(timeout=5)
        last = self._core.drain()
        self._core.close()
        return last


REGISTER_TIMEOUT_S = 120.0
"""How long a trainable keeps trying to register with its node's sampler while the
collector replaces it (a replaced sampler is registered with under the same name)."""


def register_trial(trial_id: str) -> bool:
    """Tell this node's sampler that the calling process and its placement group belong
    to ``trial_id``. Called by the trainable first thing in ``setup``; returns False (and
    does nothing) when no memsweep sampler runs, e.g. outside a memsweep sweep."""
    import ray

    if not ray.is_initialized():
        return False
    from ray.exceptions import GetTimeoutError, RayActorError

    context = ray.get_runtime_context()
    name = f"{SAMPLER_NAME_PREFIX}{context.get_node_id()}"
    try:
        sampler = ray.get_actor(name)
    except ValueError:
        return False
    pg = context.get_placement_group_id()
    # On a loaded machine the collector may replace a sampler that missed its drain
    # deadline just as a trial registers: the call then fails with the old actor's death.
    # Register with the new one (same name) instead of failing the trial.
    # Registering is a shortcut: the collector also attributes the trial's processes by
    # its placement group from the actor table, so a sampler that never answers costs a
    # warning, not the trial.
    deadline = time.monotonic() + REGISTER_TIMEOUT_S
    while True:
        try:
            ray.get(sampler.register.remote(trial_id, pg, os.getpid()), timeout=30)
            return True
        except (RayActorError, GetTimeoutError) as exc:
            if time.monotonic() > deadline:
                logger.warning(
                    "trial %s: the node's memsweep sampler did not take the registration "
                    "(%s); attribution falls back to the actor table",
                    trial_id,
                    type(exc).__name__,
                )
                return False
        time.sleep(1.0)
        with contextlib.suppress(ValueError):
            sampler = ray.get_actor(name)

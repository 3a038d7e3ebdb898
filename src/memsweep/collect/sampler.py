"""The per-node sampler: a small Ray actor that reads every Ray process on its node.

One :class:`NodeSampler` runs on each node (pinned there with a hard node-affinity
strategy, zero CPUs so it never takes a trial's place). A background thread samples at
``interval_s``: ``/proc/PID/status`` for every process each round (each kept open and
re-read with ``os.pread``) and the node's ``/proc/meminfo`` and cgroup usage; USS/PSS,
CPU time, process titles, the cgroup's OOM counters and new processes every
``full_interval_s`` (new processes are found by listing ``/proc`` and reading only the
new pids; a process's ``smaps_rollup`` is read again when its pages moved, the process
set changed or its read is ``pss_max_age_s`` old, within a CPU budget, and followed in
between through its anonymous pages, see :attr:`SamplerConfig.pss_reread_bytes` and
:attr:`SamplerConfig.pss_cpu_share`). It keeps rows in memory until the driver's
collector calls :meth:`NodeSampler.drain`; the sampler itself never writes files, so
nodes that cannot see the driver's disk are covered too.

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
import heapq
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psutil
import pyarrow as pa

from memsweep.collect import probe
from memsweep.collect.discovery import RayProcesses, name_of
from memsweep.collect.drain import (
    RAW_COLUMNS,
    RAW_SAMPLES,
    SAMPLER_NAME_PREFIX,
    Registration,
    SamplerConfig,
    SamplerDrain,
)
from memsweep.collect.kernel import KernelKill
from memsweep.store import NODE_SAMPLES, to_table

# The payload types live in memsweep.collect.drain; they stay importable from here.
__all__ = [
    "RAW_SAMPLES",
    "SAMPLER_NAME_PREFIX",
    "NodeSampler",
    "Registration",
    "SamplerConfig",
    "SamplerCore",
    "SamplerDrain",
    "register_trial",
]

logger = logging.getLogger(__name__)

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

REMAP_FRACTION = 0.1
"""A process whose file and shmem pages moved by this share of its resident size since
its last ``smaps_rollup`` read has it read again whatever the budget, and the others'
at most once per ``pss_max_age_s`` (:meth:`SamplerCore._plan_reads`): at that size the
carried estimate is no longer close (a fresh process importing PyTorch maps hundreds of
MB of libraries the others already share)."""


@dataclass
class _Tracked:
    status: probe.StatusFile
    start_ticks: int
    create_time: float
    name: str
    system: str | None
    full: tuple[int, int] | None = None
    """(USS, PSS) of the last ``smaps_rollup`` read."""
    full_pages: tuple[int, int, int] = (0, 0, 0)
    """(RssAnon, RssFile, RssShmem) when it was read."""
    full_at: float = 0.0
    full_generation: int = -1
    """The node's process-set generation when it was read."""
    full_cost_s: float = 0.0
    """CPU seconds the last ``smaps_rollup`` read took (the sampling thread's)."""


@dataclass(frozen=True)
class _Moved:
    """How a process's pages moved since its last ``smaps_rollup`` read: the change in
    its RssAnon, RssFile and RssShmem, bytes (negative when they shrank)."""

    anon: int
    file: int
    shmem: int

    @property
    def shared(self) -> int:
        """Bytes of file and shmem pages that came or went, either way."""
        return abs(self.file) + abs(self.shmem)


@dataclass
class _Buffer:
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    """One tuple per process per round, in :data:`RAW_COLUMNS` order."""
    node_rows: list[dict[str, Any]] = field(default_factory=list)
    rounds: int = 0
    dropped_rounds: int = 0


class SamplerCore:
    """The sampling logic without Ray, so that it can be tested and benchmarked alone.

    **Thread safety.** :meth:`run_round` runs on the sampling thread; :meth:`drain` and
    :meth:`register` on the actor's method thread. One lock guards the buffer.
    """

    def __init__(
        self, config: SamplerConfig, node_id: str, is_head: bool, raylet_pid: int | None = None
    ) -> None:
        """``raylet_pid``: the process whose subtree is sampled; by default this node's
        raylet, found among the sampler's own parents (a Ray actor is its child)."""
        self.config = config
        self.node_id = node_id
        self.is_head = is_head
        self._lock = threading.Lock()
        self._buffer = _Buffer()
        self._tracked: dict[int, _Tracked] = {}
        self._registrations: list[Registration] = []
        self._last_full = 0.0
        self._age_credit = 0.0
        """``smaps_rollup`` reads owed to age, carried between full rounds (see
        :meth:`_due_by_age`)."""
        self._pss_credit_s = self._pss_capacity_s()
        """CPU seconds left for ``smaps_rollup`` reads (:attr:`SamplerConfig.pss_cpu_share`)."""
        self._generation = 0
        """Bumped whenever a sampled process starts or ends (shared pages change sharers),
        and when one remaps (:meth:`_plan_reads`)."""
        self._last_remap = -math.inf
        """When a remap last had every process read."""
        self._ended: set[tuple[int, int]] = set()
        """(pid, start ticks) of processes that ended while their pid is still listed: a
        zombie (exited, not yet reaped) has no memory fields in its status and stays in
        ``/proc`` until its parent waits for it; tracked again, it would end again at
        every full round, and each time the process set would "change"."""
        self._gpu = probe.GpuProbe()
        self._boot_time = psutil.boot_time()
        self._processes = RayProcesses(
            node_id, is_head, config.driver_pid, config.driver_node_id, raylet_pid
        )
        self._table = self._processes.table
        self._node = probe.NodeFiles(self._processes.raylet_pid)

    @property
    def raylet_pid(self) -> int | None:
        """This node's raylet, whose subtree is sampled (None if not found)."""
        return self._processes.raylet_pid

    def discover(self) -> dict[int, str | None]:
        """pid → system label for every process to sample on this node now."""
        return self._processes.discover()

    def _sync_tracked(self, pids: dict[int, str | None]) -> None:
        self._ended = {(pid, ticks) for pid, ticks in self._ended if pid in pids}
        for pid in list(self._tracked):
            if pid not in pids:
                self._tracked.pop(pid).status.close()
                self._generation += 1
        for pid, system in pids.items():
            tracked = self._tracked.get(pid)
            comm = self._table.name.get(pid, "")
            if tracked is not None:
                tracked.system = system
                # Ray workers rename themselves as they start an actor or a task.
                tracked.name = name_of(probe.read_title(pid), comm)
                continue
            ticks = self._table.start_ticks.get(pid)
            if ticks is None:
                stat = probe.read_stat(pid)
                if stat is None:
                    continue
                ticks, comm = stat.start_ticks, stat.name
            if (pid, ticks) in self._ended:
                continue
            try:
                status = probe.StatusFile(pid)
            except OSError:
                continue
            self._generation += 1
            self._tracked[pid] = _Tracked(
                status=status,
                start_ticks=ticks,
                # psutil's create_time: boot time + start ticks / clock ticks per second.
                create_time=self._boot_time + ticks / _CLOCK_TICKS,
                name=name_of(probe.read_title(pid), comm),
                system=system,
            )

    # -- sampling ----------------------------------------------------------------------

    def run_round(self, now: float | None = None) -> int:
        """Sample every tracked process once; returns how many were read."""
        start = time.perf_counter()
        now = time.time() if now is None else now
        full = now - self._last_full >= self.config.full_interval_s
        due: set[int] = set()
        if full or not self._tracked:
            self._sync_tracked(self.discover())
            due = self._due_by_age(now, now - self._last_full)
            self._accrue_pss_credit(now - self._last_full)
            self._last_full = now
        gpu = self._gpu.per_pid() if self._gpu.available else None
        ts = int(now * 1_000_000)
        # One tuple per process in RAW_COLUMNS order; drain() turns them into columns.
        rows: list[tuple[Any, ...]] = []
        append = rows.append
        gone: list[int] = []
        # A full round reads every status first: when any process's shmem pages moved
        # (Ray's object store: a process mapping an object changes the PSS of every
        # process that maps it), each process holding shmem pages is wanted again.
        statuses: dict[int, probe.StatusFields | None] = {}
        moves: dict[int, _Moved] = {}
        reads: set[int] = set()
        if full:
            statuses = {pid: t.status.read_fields() for pid, t in self._tracked.items()}
            moves = self._moves(statuses)
            reads = self._plan_reads(statuses, moves, due, now)
        for pid, tracked in self._tracked.items():
            status = statuses[pid] if full else tracked.status.read_fields()
            if status is None:
                gone.append(pid)
                continue
            rss, hwm, swap, anon, file, shmem, ppid = status
            uss = pss = cpu = None
            if full:
                uss, pss = self._full_memory(
                    pid, tracked, now, (anon, file, shmem), moves.get(pid), pid in reads
                )
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
            ended = self._tracked.pop(pid)
            ended.status.close()
            self._ended.add((pid, ended.start_ticks))
            self._table.forget(pid)
            self._generation += 1
        if full:
            self._node.refresh()
        node = self._node.read(counters=full)
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

    def _due_by_age(self, now: float, elapsed_s: float) -> set[int]:
        """The processes whose ``smaps_rollup`` is read again at this full round for its
        age: the oldest reads, as many as keep every process within ``pss_max_age_s``
        when spread evenly (``len(tracked) × elapsed_s / pss_max_age_s`` per round, the
        fraction carried to the next), plus any that are older than that already.

        Spread, not each when it comes of age: the reads of one sweep's processes come of
        age together (a process starting or ending has them all read at once), and a round
        that walks the page tables of twenty Ray workers with PyTorch loaded takes
        100–180 ms, longer than the 0.1 s period: every process's 10 Hz sample would skip
        a beat every ``pss_max_age_s``.
        """
        age = self.config.pss_max_age_s
        read = [(t.full_at, pid) for pid, t in self._tracked.items() if t.full is not None]
        if age <= 0:
            return {pid for _, pid in read}
        self._age_credit = min(
            self._age_credit + len(self._tracked) * min(elapsed_s, age) / age, len(read)
        )
        owed = int(self._age_credit)
        self._age_credit -= owed
        return {pid for _, pid in heapq.nsmallest(owed, read)} | {
            pid for at, pid in read if now - at >= age
        }

    def _moves(self, statuses: dict[int, probe.StatusFields | None]) -> dict[int, _Moved]:
        """pid → how its pages moved since its last ``smaps_rollup`` read, for each
        process read before and still there (a full round's statuses)."""
        moves = {}
        for pid, status in statuses.items():
            tracked = self._tracked[pid]
            if status is None or tracked.full is None:
                continue
            anon, file, shmem = tracked.full_pages
            moves[pid] = _Moved(status[3] - anon, status[4] - file, status[5] - shmem)
        return moves

    def _remapped(self, moves: dict[int, _Moved]) -> set[int]:
        """The processes whose file or shmem pages moved by :data:`REMAP_FRACTION` of what
        was resident at their last read (a process importing PyTorch, or starting to
        share a large object): their last read no longer describes them."""
        threshold = self.config.pss_reread_bytes
        return {
            pid
            for pid, moved in moves.items()
            if moved.shared >= max(threshold, REMAP_FRACTION * sum(self._tracked[pid].full_pages))
        }

    def _pss_capacity_s(self) -> float:
        """The most CPU seconds of ``smaps_rollup`` reads the budget holds."""
        config = self.config
        return config.pss_cpu_share * max(config.pss_max_age_s, config.full_interval_s)

    def _accrue_pss_credit(self, elapsed_s: float) -> None:
        if math.isinf(self.config.pss_cpu_share):
            return
        self._pss_credit_s = min(
            self._pss_credit_s + self.config.pss_cpu_share * max(elapsed_s, 0.0),
            self._pss_capacity_s(),
        )

    def _plan_reads(
        self,
        statuses: dict[int, probe.StatusFields | None],
        moves: dict[int, _Moved],
        due_by_age: set[int],
        now: float,
    ) -> set[int]:
        """The processes whose ``smaps_rollup`` is read at this full round.

        Always a process's first read (not charged to the budget: what it costs is
        bounded by how many processes start), and, charged, the reads of processes that
        remapped (:meth:`_remapped`) or whose sharers may have changed (another process's
        shmem pages moved while they hold some, a sampled process started or ended, or
        one remapped: at most once per ``pss_max_age_s``): nothing in their own status shows
        how their share of shared pages moved, and a sum of PSS over processes would
        count those pages twice until they are read. Then, while
        :attr:`SamplerConfig.pss_cpu_share`'s credit lasts (each read costed at its last
        one), those whose own file or shmem pages moved (the most moved first; carried
        meanwhile at the last read's share, :meth:`_full_memory`), then those due for
        age (:meth:`_due_by_age`, oldest first). A read wanted and not made stays wanted:
        its trigger is measured against its last read, and its age only grows.
        """
        threshold = self.config.pss_reread_bytes
        shared_moved = any(abs(moved.shmem) >= threshold for moved in moves.values())
        remapped = self._remapped(moves)
        if remapped and now - self._last_remap >= self.config.pss_max_age_s:
            # The others mapping the same library files now share them with one more: read
            # them all, as when the process set changes, but at most once per max age (a
            # process importing PyTorch remaps for seconds on end; reading every process
            # at every one of those rounds cost as much as no budget at all).
            self._generation += 1
            self._last_remap = now
        first: set[int] = set()
        """Reads made whatever the budget: first reads, and sharers that may have changed."""
        wanted: list[tuple[int, float, int]] = []
        for pid, status in statuses.items():
            tracked = self._tracked[pid]
            if status is None:
                continue
            moved = moves.get(pid)
            if moved is None:  # never read
                first.add(pid)
                continue
            if (
                tracked.full_generation != self._generation
                or (shared_moved and status[5] > 0)
                or pid in remapped
            ):
                first.add(pid)
            elif moved.shared >= threshold:
                wanted.append((0, -moved.shared, pid))
            elif pid in due_by_age:
                wanted.append((1, tracked.full_at, pid))
        if math.isinf(self.config.pss_cpu_share):
            return first | {pid for *_, pid in wanted}
        credit = self._pss_credit_s - sum(self._tracked[pid].full_cost_s for pid in first)
        chosen = first
        for *_, pid in sorted(wanted):
            if credit <= 0:
                break
            chosen.add(pid)
            credit -= self._tracked[pid].full_cost_s
        return chosen

    def _full_memory(
        self,
        pid: int,
        tracked: _Tracked,
        now: float,
        pages: tuple[int, int, int],
        moved: _Moved | None,
        read: bool,
    ) -> tuple[int | None, int | None]:
        """(USS, PSS) of ``pid`` at a full round, bytes: read from ``smaps_rollup`` when
        :meth:`_plan_reads` chose it; else carried from the last read: plus the change in
        its anonymous pages (a page a process faults in anonymously is its own, so it
        counts whole in USS and PSS alike), and, when its file or shmem pages moved by
        :attr:`SamplerConfig.pss_reread_bytes` (a read wanted, put off by the budget),
        plus that move at the share of a page the last read gave its shared pages.

        ``pages``: its (RssAnon, RssFile, RssShmem) now; ``moved``: their change since the
        last read (None if never read)."""
        last = tracked.full
        if not read and last is not None and moved is not None:
            uss, pss = last[0] + moved.anon, last[1] + moved.anon
            if moved.shared >= self.config.pss_reread_bytes:
                # PSS counts a page shared by k processes as 1/k of a page: the last
                # read's (PSS - USS) / (resident - USS) is that share, on average.
                resident_shared = sum(tracked.full_pages) - last[0]
                if resident_shared > 0:
                    share = min(max((last[1] - last[0]) / resident_shared, 0), 1)
                    pss += round((moved.file + moved.shmem) * share)
            return max(uss, 0), max(pss, 0)
        cpu = time.thread_time()
        memory = probe.read_full_pid(pid)
        cost = time.thread_time() - cpu
        if last is not None and not math.isinf(self.config.pss_cpu_share):
            # The whole cost, however far below zero: one Ray worker's read can cost
            # more than the budget holds, and is then paid back before the next one.
            self._pss_credit_s -= cost
        if memory is None:
            return None, None
        tracked.full = (memory.uss_bytes, memory.pss_bytes)
        tracked.full_pages = pages
        tracked.full_at, tracked.full_generation = now, self._generation
        tracked.full_cost_s = cost
        return tracked.full

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
        columns = list(zip(*buffer.rows, strict=True)) or [() for _ in RAW_COLUMNS]
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
            "raylet_pid": self._core.raylet_pid,
        }

    def drain(self) -> SamplerDrain:
        return self._core.drain()

    def register(self, trial_id: str, placement_group_id: str | None, pid: int) -> None:
        self._core.register(trial_id, placement_group_id, pid)

    def kernel_oom_killed(self, pid: int, create_time: float | None) -> KernelKill:
        """Did this node's kernel OOM-kill ``pid`` (started at ``create_time``, epoch s),
        in which memory cgroup, and that cgroup's counters now
        (:func:`memsweep.collect.kernel.kernel_kill`)."""
        from memsweep.collect.kernel import kernel_kill, read_kmsg

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

"""The driver-side collector: places samplers, drains them, attributes, writes Parquet.

It runs on its own thread in the sweep driver, so that Tune's control loop (where the
callback's hooks run) never waits for a node, the GCS or a disk. Every
``flush_interval_s`` it:

1. follows the cluster's membership (``ray.nodes()``): a node that joined gets a sampler,
   a node that died is recorded as gone, with its samples up to then kept;
2. drains every sampler (one ``ray.get`` over all of them, with a timeout), restarting
   a sampler that died and recording the gap;
3. reads the actor table once, from the GCS (:func:`gcs_actor_table`: no dashboard
   needed), and attributes each process to its trial and role
   (:mod:`memsweep.collect.attribution`);
4. appends one Parquet part file per table, and writes the trials table
   (:class:`~memsweep.collect.trials.TrialsTable`) when it changed.

It calls nobody back: what it found that the driver must act on (a trial over its memory
budget) waits in :meth:`Collector.take_breaches`; what it settles itself (a killed
process's role and node, a trial with no attributed process) goes into the trials table.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from memsweep import result_keys as keys
from memsweep.collect.attribution import ActorInfo, Attribution, attribute
from memsweep.collect.faults import (
    BudgetBreach,
    KernelKill,
    MemoryBudget,
    TrialKill,
    kill_facts,
    over_budget,
)
from memsweep.collect.sampler import (
    SAMPLER_NAME_PREFIX,
    NodeSampler,
    SamplerConfig,
    SamplerDrain,
)
from memsweep.collect.trials import TrialsTable
from memsweep.errors import ClusterError, DataError
from memsweep.store import SAMPLES, ResultsWriter
from memsweep.store.peaks import role_memory, trial_peaks_arrow
from memsweep.units import MB

log = logging.getLogger(__name__)

_HOLD_S = 30.0
"""Seconds to hold back an actor process's rows while it cannot be attributed yet: the
GCS lists a new actor a moment after it starts, and Tune names a trainable's trial
only once its set-up is done (memsweep's own trainable registers at once)."""


def _now_us() -> int:
    return int(time.time() * 1_000_000)


@dataclass
class _NodeState:
    node_id: str
    hostname: str
    ip: str
    is_head: bool
    total_bytes: int | None
    first_seen: int
    last_seen: int
    state: str = "alive"
    sampler: Any = None


@dataclass(frozen=True, slots=True)
class TrialMemory:
    """A trial's memory from memsweep's latest samples of its processes."""

    rss_bytes: int
    """Σ RSS of the trial's processes in their node's latest sampling round."""
    peak_bytes: int
    """The trial's peak so far: the largest Σ PSS of its processes in any round with a
    PSS reading (the one definition, :mod:`memsweep.store.peaks`); 0 before the first."""
    hwm_bytes: int
    """Σ over every process the trial has had of its VmHWM: spikes between samples show,
    shared pages count once per process."""
    roles: tuple[tuple[str, int, int], ...] = ()
    """(role, Σ PSS now, largest Σ PSS so far) per role of the trial, bytes, and ``total``."""

    def as_result(self) -> dict[str, int]:
        """The Tune result keys (:mod:`memsweep.result_keys`) for these figures."""
        result = {
            keys.RSS_BYTES: self.rss_bytes,
            keys.PEAK_BYTES: self.peak_bytes,
            keys.HWM_BYTES: self.hwm_bytes,
            keys.PEAK_MB: round(self.peak_bytes / MB),
        }
        for role, current, peak in self.roles:
            current_key, peak_key = keys.role_keys(role)
            result[current_key] = current
            result[peak_key] = peak
        return result


UNATTRIBUTED = (
    "memsweep attributed no process to this trial: its samples are missing, so its "
    "memory is unknown (is the trial's actor visible in the GCS actor table?)"
)
"""The trials table's ``error`` for a trial that ended with no process attributed."""


class Collector:
    """Samplers on every node, drained into a :class:`ResultsWriter`.

    **Thread safety.** :meth:`add_progress`, :meth:`add_event` and the trial-table setters
    may be called from Tune's thread; they only append under a lock. Everything that talks
    to Ray or the disk runs on the collector thread (or in :meth:`stop`).
    """

    def __init__(
        self,
        writer: ResultsWriter,
        config: SamplerConfig,
        flush_interval_s: float,
        trials: TrialsTable | None = None,
        budget: MemoryBudget | None = None,
    ) -> None:
        self.writer = writer
        self.config = config
        self.flush_interval_s = flush_interval_s
        self.trials = trials if trials is not None else TrialsTable()
        self._nodes: dict[str, _NodeState] = {}
        self._lock = threading.Lock()
        self._progress: list[dict[str, Any]] = []
        self._events: list[dict[str, Any]] = []
        self._trial_of_group: dict[str, str] = {}
        self._trial_of_pid: dict[tuple[str, int], str] = {}
        self._trial_of_actor: dict[str, str] = {}
        self._actors: dict[tuple[str, int], ActorInfo] = {}
        self._held: list[tuple[str, pa.Table, float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.rows_written = 0
        self.budget = budget
        self._over_budget: set[str] = set()
        self._breaches: list[BudgetBreach] = []
        self._pending_kills: dict[str, tuple[TrialKill, float]] = {}
        self._peaks: dict[tuple[str, str, int, float | None], int] = {}
        self._pss_peaks: dict[str, int] = {}
        self._memory: dict[str, TrialMemory] = {}
        self._roles: dict[tuple[str, str], tuple[int, int]] = {}
        """(trial, role) → (Σ PSS now, largest Σ PSS so far), bytes."""
        self._seen: dict[tuple[str, int], tuple[str, str, float | None]] = {}
        # Trials that ended before this collector started (finished in an earlier run of a
        # resumed sweep) had their processes sampled by that run's collector, not this one.
        self._started_us = _now_us()
        self._node_memory: dict[str, tuple[int | None, int | None]] = {}

    # -- called from Tune's thread ------------------------------------------------------

    def add_progress(self, row: dict[str, Any]) -> None:
        with self._lock:
            self._progress.append(row)

    def add_event(
        self,
        kind: str,
        node_id: str | None = None,
        trial_id: str | None = None,
        detail: str | None = None,
    ) -> None:
        with self._lock:
            self._events.append(
                {
                    "ts": _now_us(),
                    "kind": kind,
                    "node_id": node_id,
                    "trial_id": trial_id,
                    "detail": detail,
                }
            )

    def map_actor(self, actor_id: str, trial_id: str) -> None:
        """A trial's trainable actor: its placement group is resolved at the next flush."""
        with self._lock:
            self._trial_of_actor[actor_id] = trial_id

    def map_pid(self, node_id: str, pid: int, trial_id: str) -> None:
        """A process of ``trial_id`` (``memsweep watch``: a job's actor outside any group)."""
        with self._lock:
            self._trial_of_pid[(node_id, pid)] = trial_id

    def map_group(self, placement_group_id: str, trial_id: str) -> None:
        with self._lock:
            self._trial_of_group[placement_group_id] = trial_id

    @property
    def trial_of_group(self) -> dict[str, str]:
        with self._lock:
            return dict(self._trial_of_group)

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Place samplers now (so the first trial is sampled from its start) and go.

        Raises :class:`~memsweep.errors.ClusterError` if the GCS actor table cannot be
        read: without it no process could be attributed to a trial, so memsweep stops at
        set-up rather than record every process as Ray's own."""
        try:
            self._refresh_actors()
        except Exception as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ClusterError(
                f"memsweep cannot read Ray's actor table from the GCS ({reason}), so it "
                "could attribute no process to a trial: run on Ray 2.60 with a driver "
                "connected to the cluster (ray.init before Tuner.fit)."
            ) from None
        self._follow_membership()
        self._thread = threading.Thread(target=self._loop, name="memsweep-collector", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.flush_interval_s):
            try:
                self.flush()
            except DataError as exc:
                # The results folder is gone or full: nothing more can be kept.
                self.error = exc
                log.error("memsweep: %s", exc)
                return
            except Exception as exc:
                log.warning("memsweep collector: %s: %s (will retry)", type(exc).__name__, exc)

    def stop(self) -> None:
        """Final drain of every sampler, then stop them. Idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None
        with contextlib.suppress(Exception):
            self.flush(final=True)
        with contextlib.suppress(Exception):
            self._write_trials()
        import ray

        for node in self._nodes.values():
            if node.sampler is not None:
                with contextlib.suppress(Exception):
                    ray.kill(node.sampler)
                node.sampler = None
        with contextlib.suppress(Exception):
            self._write_nodes()

    # -- membership ---------------------------------------------------------------------

    def _start_sampler(self, node: _NodeState) -> Any:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        name = f"{SAMPLER_NAME_PREFIX}{node.node_id}"
        with contextlib.suppress(ValueError):
            ray.kill(ray.get_actor(name))
        actor_cls = ray.remote(NodeSampler)
        return actor_cls.options(
            name=name,
            num_cpus=0,
            max_restarts=0,
            max_concurrency=4,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node.node_id, soft=False),
        ).remote(self.config, node.node_id, node.is_head)

    def _follow_membership(self) -> None:

        now = _now_us()
        alive_ids = set()
        for info in cluster_nodes():
            node_id = info["NodeID"]
            if not info.get("Alive", info.get("alive")):
                continue
            alive_ids.add(node_id)
            node = self._nodes.get(node_id)
            if node is None:
                resources = info.get("Resources", {})
                node = _NodeState(
                    node_id=node_id,
                    hostname=info.get("NodeManagerHostname", ""),
                    ip=info.get("NodeManagerAddress", ""),
                    is_head="node:__internal_head__" in resources,
                    total_bytes=None,
                    first_seen=now,
                    last_seen=now,
                )
                self._nodes[node_id] = node
                self.add_event("node_added", node_id=node_id, detail=node.hostname)
            node.last_seen = now
            if node.state != "alive":
                node.state = "alive"
            if node.sampler is None:
                node.sampler = self._start_sampler(node)
                self.add_event("sampler_started", node_id=node_id)
        for node_id, node in self._nodes.items():
            if node_id not in alive_ids and node.state == "alive":
                node.state = "dead"
                node.sampler = None
                self.add_event("node_removed", node_id=node_id, detail="node left the cluster")

    # -- one flush ------------------------------------------------------------------------

    def _refresh_actors(self) -> None:
        table: dict[tuple[str, int], ActorInfo] = {}
        for (node_id, pid), info in gcs_actor_table():
            with self._lock:
                trial = self._trial_of_actor.get(info.actor_id)
                if trial is not None and info.placement_group_id:
                    self._trial_of_group.setdefault(info.placement_group_id, trial)
            previous = table.get((node_id, pid))
            if previous is None or (info.alive and not previous.alive):
                table[(node_id, pid)] = info
        self._actors = table

    def _drain_all(self, final: bool) -> list[SamplerDrain]:
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError

        live = [(node, node.sampler) for node in self._nodes.values() if node.sampler is not None]
        if not live:
            return []
        method = "stop" if final else "drain"
        refs = [getattr(sampler, method).remote() for _, sampler in live]
        # One deadline for all samplers: one on a node that just died (before the GCS
        # marks it dead) never answers, and must not hold up the others.
        ray.wait(refs, num_returns=len(refs), timeout=max(10.0, 3 * self.flush_interval_s))
        drained: list[SamplerDrain] = []
        for (node, _sampler), ref in zip(live, refs, strict=True):
            try:
                drained.append(ray.get(ref, timeout=0))
            except (RayActorError, GetTimeoutError, ray.exceptions.RayError) as exc:
                still_alive = any(
                    n["NodeID"] == node.node_id and n.get("Alive") for n in cluster_nodes()
                )
                node.sampler = None
                if still_alive:
                    self.add_event(
                        "sampler_lost",
                        node_id=node.node_id,
                        detail=f"{type(exc).__name__}: samples since the last drain are lost",
                    )
                if still_alive and not final:
                    node.sampler = self._start_sampler(node)
                    self.add_event("sampler_restarted", node_id=node.node_id)
                elif not still_alive:
                    node.state = "dead"
                    self.add_event("node_removed", node_id=node.node_id, detail="node died")
        return drained

    def flush(self, final: bool = False) -> None:
        """Drain, attribute and write once."""
        if not final:
            self._follow_membership()
        drained = self._drain_all(final)
        for batch in drained:
            for reg in batch.registrations:
                if reg.placement_group_id:
                    self.map_group(reg.placement_group_id, reg.trial_id)
                self._trial_of_pid[(reg.node_id, reg.pid)] = reg.trial_id
                self.add_event(
                    "trial_registered",
                    node_id=reg.node_id,
                    trial_id=reg.trial_id,
                    detail=f"pid {reg.pid}",
                )
            if batch.dropped_rounds:
                self.add_event(
                    "gap",
                    node_id=batch.node_id,
                    detail=f"{batch.dropped_rounds} rounds dropped: sampler buffer full",
                )
            node = self._nodes.get(batch.node_id)
            if node is not None and batch.node_samples.num_rows:
                node.total_bytes = int(batch.node_samples["total_bytes"][0].as_py() or 0)
            if batch.node_samples.num_rows:
                last = batch.node_samples.slice(batch.node_samples.num_rows - 1)
                self._node_memory[batch.node_id] = (
                    last["used_bytes"][0].as_py(),
                    last["available_bytes"][0].as_py(),
                )
        if drained:
            try:
                self._refresh_actors()
            except Exception as exc:
                # The GCS can be briefly unreachable: keep the last actor table; rows of
                # new processes are held back below.
                log.warning("memsweep: actor table not refreshed: %s", exc)
        trial_of_group = self.trial_of_group
        pending = [(b.node_id, b.samples, time.time()) for b in drained if b.samples.num_rows]
        pending = self._held + pending
        self._held = []
        try:
            written = self._write_samples(pending, trial_of_group, final)
        except Exception:
            # Nothing drained is dropped on a failed write: it is retried next flush.
            self._held = pending
            raise
        if written is not None:
            self._remember(written)
            if self.budget is not None and not final:
                self._check_budget(written)
        self._resolve_kills()
        self._flag_unattributed(final)
        node_tables = [b.node_samples for b in drained if b.node_samples.num_rows]
        if node_tables:
            self.writer.append("node_samples", pa.concat_tables(node_tables))
        with self._lock:
            progress, self._progress = self._progress, []
            events, self._events = self._events, []
        if progress:
            self.writer.append_rows("progress", progress)
        if events:
            self.writer.append_rows("events", events)
        self._write_nodes()
        self._write_trials()

    def _write_samples(
        self,
        pending: list[tuple[str, pa.Table, float]],
        trial_of_group: dict[str, str],
        final: bool,
    ) -> pa.Table | None:
        tables: list[pa.Table] = []
        for node_id, raw, since in pending:
            table, unresolved = self._attribute(node_id, raw, trial_of_group)
            if (
                unresolved is not None
                and unresolved.num_rows
                and time.time() - since < _HOLD_S
                and not final
            ):
                self._held.append((node_id, unresolved, since))
            elif unresolved is not None and unresolved.num_rows:
                table = pa.concat_tables(
                    [table, self._attribute(node_id, unresolved, trial_of_group, force=True)[0]]
                )
            if table.num_rows:
                tables.append(table)
        if tables:
            samples = pa.concat_tables(tables).sort_by(
                [("ts", "ascending"), ("node_id", "ascending")]
            )
            self.writer.append("samples", samples)
            self.rows_written += samples.num_rows
            return samples
        return None

    # -- trial processes, budgets, kills ------------------------------------------------

    def _remember(self, samples: pa.Table) -> None:
        """Where each trial process ran, in which role (asked about when it is killed),
        and each trial's memory now (:class:`TrialMemory`)."""
        rows = samples.filter(pc.is_valid(samples["trial_id"]))
        if not rows.num_rows:
            return
        for row in (
            rows.group_by(["trial_id", "pid", "node_id", "role", "create_time"])
            .aggregate([("hwm_bytes", "max")])
            .to_pylist()
        ):
            self._seen[(row["trial_id"], row["pid"])] = (
                row["node_id"],
                row["role"],
                row["create_time"],
            )
            process = (row["trial_id"], row["node_id"], row["pid"], row["create_time"])
            self._peaks[process] = max(self._peaks.get(process, 0), row["hwm_bytes_max"] or 0)
        latest = rows.group_by(["trial_id", "node_id"]).aggregate([("ts", "max")])
        rss: dict[str, int] = {}
        for last in latest.to_pylist():
            round_rows = rows.filter(
                pc.and_(
                    pc.and_(
                        pc.equal(rows["trial_id"], last["trial_id"]),
                        pc.equal(rows["node_id"], last["node_id"]),
                    ),
                    pc.equal(rows["ts"], last["ts_max"]),
                )
            )
            total = pc.sum(round_rows["rss_bytes"]).as_py() or 0
            rss[last["trial_id"]] = rss.get(last["trial_id"], 0) + int(total)
        for trial_id, found in trial_peaks_arrow(rows).items():
            if found.peak_bytes is not None:
                self._pss_peaks[trial_id] = max(self._pss_peaks.get(trial_id, 0), found.peak_bytes)
        for (trial_id, role), seen in role_memory(rows).items():
            before = self._roles.get((trial_id, role), (0, 0))
            self._roles[(trial_id, role)] = (
                seen.current_bytes if seen.current_bytes is not None else before[0],
                max(before[1], seen.peak_bytes or 0),
            )
        with self._lock:
            for trial_id, total in rss.items():
                hwm = sum(v for k, v in self._peaks.items() if k[0] == trial_id)
                roles = sorted((r, *v) for (t, r), v in self._roles.items() if t == trial_id)
                current = sum(role[1] for role in roles)
                roles.append(("total", current, max(self._pss_peaks.get(trial_id, 0), current)))
                self._memory[trial_id] = TrialMemory(
                    total, self._pss_peaks.get(trial_id, 0), max(hwm, total), tuple(roles)
                )

    def trial_memory(self, trial_id: str) -> TrialMemory | None:
        """The trial's memory at memsweep's latest drain, or None before its first sample."""
        with self._lock:
            return self._memory.get(trial_id)

    def report_kill(self, trial_id: str, kill: TrialKill) -> None:
        """A trial ended by a kill: which process (role, node), the node's memory and, for a
        vanished one, the kernel's verdict go into its row once its last samples are in."""
        with self._lock:
            self._pending_kills[trial_id] = (kill, time.monotonic())

    def take_breaches(self) -> list[BudgetBreach]:
        """Trials found over the memory budget since the last call (each trial once)."""
        with self._lock:
            breaches, self._breaches = self._breaches, []
        return breaches

    def _resolve_kills(self) -> None:
        with self._lock:
            pending = dict(self._pending_kills)
        patience_s = 3 * self.flush_interval_s + 5
        for trial_id, (kill, since) in pending.items():
            found = self.process_of(trial_id, kill.killed_pids)
            if found is None and not self.stopping and time.monotonic() - since < patience_s:
                continue
            kernel = None
            if found is not None and kill.vanished:
                kernel = self.kernel_oom_killed(found[1], found[0], found[3])
            ray_exit = worker_exit(found[1], found[0]) if found is not None else (None, None)
            facts = kill_facts(
                kill, found, self.node_memory(found[1]) if found else (None, None), kernel, ray_exit
            )
            with self._lock:
                self._pending_kills.pop(trial_id, None)
            if facts:
                self.trials.update(trial_id, **facts)

    def _flag_unattributed(self, final: bool) -> None:
        """A trial that ended with no process attributed is an error, never an empty row."""
        attributed = {trial for trial, _pid in self._seen}
        patience_us = int((_HOLD_S + 3 * self.flush_interval_s) * 1_000_000)
        for row in self.trials.rows():
            if row.ended_at is None or row.trial_id in attributed or row.error == UNATTRIBUTED:
                continue
            if row.ended_at < self._started_us:
                continue
            if not final and _now_us() - row.ended_at < patience_us:
                continue
            if row.status == keys.TERMINATED:
                self.trials.update(row.trial_id, status=keys.ERROR, error=UNATTRIBUTED)
            elif not row.error:
                self.trials.update(row.trial_id, error=UNATTRIBUTED)
            log.error("memsweep: trial %s: %s", row.trial_id, UNATTRIBUTED)

    def _write_trials(self) -> None:
        rows = self.trials.take_if_changed()
        if rows is None:
            return
        pg_of_trial = {trial: group for group, trial in self.trial_of_group.items()}
        records = []
        for row in rows:
            group = row.placement_group_id or pg_of_trial.get(row.trial_id)
            records.append(row.with_(placement_group_id=group).as_record())
        try:
            self.writer.replace("trials", records)
        except Exception:
            self.trials.mark_changed()
            raise

    def _check_budget(self, samples: pa.Table) -> None:
        assert self.budget is not None
        used = {
            node: memory[0] for node, memory in self._node_memory.items() if memory[0] is not None
        }
        for breach in over_budget(samples, used, self.budget):
            if breach.trial_id in self._over_budget:
                continue
            self._over_budget.add(breach.trial_id)
            self.add_event(
                "over_budget",
                node_id=breach.node_id,
                trial_id=breach.trial_id,
                detail=breach.detail,
            )
            log.warning("memsweep: stopping trial %s: %s", breach.trial_id, breach.detail)
            with self._lock:
                self._breaches.append(breach)

    def process_of(
        self, trial_id: str, pids: Iterable[int]
    ) -> tuple[int, str, str, float | None] | None:
        """The first of ``pids`` seen in ``trial_id``: (pid, node id, role, create time)."""
        for pid in pids:
            seen = self._seen.get((trial_id, pid))
            if seen is not None:
                return (pid, *seen)
        return None

    def node_memory(self, node_id: str) -> tuple[int | None, int | None]:
        """(used, available) bytes of ``node_id`` in its latest drained sample."""
        return self._node_memory.get(node_id, (None, None))

    def kernel_oom_killed(
        self, node_id: str, pid: int, create_time: float | None
    ) -> KernelKill | None:
        """Ask ``node_id``'s sampler whether its kernel OOM-killed ``pid`` (and in which
        memory cgroup); None if the sampler cannot be asked."""
        import ray

        node = self._nodes.get(node_id)
        if node is None or node.sampler is None:
            return None
        try:
            answer = ray.get(node.sampler.kernel_oom_killed.remote(pid, create_time), timeout=10)
        except Exception as exc:
            log.warning("memsweep: kernel log of node %s not read: %s", node_id, exc)
            return None
        return answer if isinstance(answer, KernelKill) else None

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` began: what is unknown now stays unknown."""
        return self._stop.is_set()

    def _attribute(
        self, node_id: str, raw: pa.Table, trial_of_group: dict[str, str], force: bool = False
    ) -> tuple[pa.Table, pa.Table | None]:
        pids = raw["pid"].to_pylist()
        ppids = raw["ppid"].to_pylist()
        names = raw["name"].to_pylist()
        systems = raw["system"].to_pylist()
        processes = {
            pid: (pid, ppid or 0, name or "", system)
            for pid, ppid, name, system in zip(pids, ppids, names, systems, strict=True)
        }
        with self._lock:
            trainables = set(self._trial_of_actor)
        found: dict[int, Attribution] = attribute(
            node_id,
            processes.values(),
            self._actors,
            trial_of_group,
            self._trial_of_pid,
            trainables,
        )
        waiting = set()
        if not force:
            for pid, who in found.items():
                if who.trial_id is not None or who.role in {"ray_system", "driver", "memsweep"}:
                    continue
                actor = self._actors.get((node_id, pid))
                title = processes[pid][2]
                unknown_actor = (
                    actor is None
                    and title.startswith("ray::")
                    and not title.startswith("ray::IDLE")
                )
                unmapped_group = actor is not None and bool(actor.placement_group_id)
                if unknown_actor or unmapped_group:
                    waiting.add(pid)
        n = raw.num_rows
        columns = {
            "ts": raw["ts"],
            "run_id": pa.array([self.writer.run_id] * n, pa.string()),
            "node_id": pa.array([node_id] * n, pa.string()),
            "pid": raw["pid"],
            "ppid": raw["ppid"],
            "create_time": raw["create_time"],
            "name": raw["name"],
            "trial_id": pa.array([found[p].trial_id for p in pids], pa.string()),
            "role": pa.array([found[p].role for p in pids], pa.string()),
            "actor_id": pa.array([found[p].actor_id for p in pids], pa.string()),
            "actor_class": pa.array([found[p].actor_class for p in pids], pa.string()),
        }
        for name in SAMPLES.names:
            if name not in columns:
                columns[name] = raw[name]
        table = pa.Table.from_pydict(columns, schema=SAMPLES)
        if not waiting:
            return table, None
        mask = pc.is_in(raw["pid"], value_set=pa.array(sorted(waiting), pa.int32()))
        return table.filter(pc.invert(mask)), raw.filter(mask)

    def _write_nodes(self) -> None:
        rows = [
            {
                "node_id": n.node_id,
                "hostname": n.hostname,
                "ip": n.ip,
                "is_head": n.is_head,
                "total_bytes": n.total_bytes,
                "first_seen": n.first_seen,
                "last_seen": n.last_seen,
                "state": n.state,
            }
            for n in self._nodes.values()
        ]
        if rows:
            self.writer.replace("nodes", rows)


def gcs_actor_table() -> list[tuple[tuple[str, int], ActorInfo]]:
    """Every actor with a process, from the GCS: ((node id, pid), actor).

    Read through the driver's GCS connection (``ray._private.state``, what
    ``ray.util.state`` serves through the dashboard), so it works with
    ``ray.init(include_dashboard=False)``. Dead actors are listed too: their last pid
    still names the samples taken before they died.
    """
    from ray._private.state import state
    from ray.core.generated import gcs_pb2

    accessor = state._connect_and_get_accessor()
    table_data: Any = gcs_pb2.ActorTableData  # type: ignore[attr-defined]
    alive = table_data.ActorState.Value("ALIVE")
    out = []
    for raw in accessor.get_actor_table(None, None):
        actor = table_data.FromString(raw)
        if not actor.pid or not actor.address.node_id:
            continue
        info = ActorInfo(
            actor_id=actor.actor_id.hex(),
            class_name=actor.class_name,
            placement_group_id=actor.placement_group_id.hex() or None,
            alive=actor.state == alive,
            job_id=actor.job_id.hex(),
            owner_worker_id=actor.owner_address.worker_id.hex(),
            worker_id=actor.address.worker_id.hex(),
        )
        out.append(((actor.address.node_id.hex(), int(actor.pid)), info))
    return out


def worker_exit(node_id: str, pid: int) -> tuple[str | None, str | None]:
    """Ray's word on how the worker process ``pid`` of ``node_id`` exited: (exit type,
    exit detail) from the GCS worker table, e.g. ``("NODE_OUT_OF_MEMORY", "1 worker(s)
    were killed due to the node running low on memory. …")``; (None, None) when the
    table has no dead worker with that pid there (not a Ray worker, or not dead yet).

    The same rows ``ray.util.state.list_workers(detail=True)`` serves (fields
    ``exit_type``, ``exit_detail``) but read through the driver's GCS connection, so it
    works without a dashboard (``include_dashboard=False``). The latest row wins when
    a pid was reused."""
    from ray._private.state import state
    from ray.core.generated import common_pb2, gcs_pb2

    try:
        accessor = state._connect_and_get_accessor()
        rows = accessor.get_worker_table()
    except Exception as exc:
        log.warning("memsweep: Ray's worker table not read: %s", exc)
        return None, None
    table_data: Any = gcs_pb2.WorkerTableData  # type: ignore[attr-defined]
    exit_types: Any = common_pb2.WorkerExitType  # type: ignore[attr-defined]
    best: tuple[int, str | None, str | None] | None = None
    for raw in rows:
        worker = table_data.FromString(raw)
        if worker.pid != pid or worker.is_alive or worker.worker_address.node_id.hex() != node_id:
            continue
        exit_type = exit_types.Name(worker.exit_type) if worker.HasField("exit_type") else None
        when = int(worker.end_time_ms)
        if best is None or when >= best[0]:
            best = (when, exit_type, worker.exit_detail or None)
    return (None, None) if best is None else (best[1], best[2])


def cluster_nodes() -> list[dict[str, Any]]:
    """``ray.nodes()``, typed: every node the GCS knows, alive or dead."""
    import ray

    return list(ray.nodes())  # type: ignore[no-untyped-call]


def driver_identity() -> tuple[int, str]:
    """The driver's pid and node id, so the head sampler records it as ``driver``."""
    import ray

    return os.getpid(), ray.get_runtime_context().get_node_id()

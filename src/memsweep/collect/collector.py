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
Its parts: :mod:`~memsweep.collect.nodes` (the samplers, membership),
:mod:`~memsweep.collect.cluster` (what is read from Ray), :mod:`~memsweep.collect.sample_rows`
(attributed rows), :mod:`~memsweep.collect.memory` (each trial's memory so far).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

import pyarrow as pa

from memsweep import result_keys as keys
from memsweep.collect.attribution import ActorInfo
from memsweep.collect.cluster import gcs_actor_table, worker_exit
from memsweep.collect.events import Event
from memsweep.collect.faults import BudgetBreach, MemoryBudget, TrialKill, kill_facts, over_budget
from memsweep.collect.memory import TrialMemory, TrialProcesses
from memsweep.collect.nodes import SamplerFleet
from memsweep.collect.sample_rows import attribute_samples
from memsweep.collect.sampler import SamplerConfig, SamplerDrain
from memsweep.collect.trials import TrialsTable, now_us
from memsweep.errors import ClusterError, DataError
from memsweep.store import ResultsWriter

__all__ = ["UNATTRIBUTED", "Collector", "TrialMemory"]

log = logging.getLogger(__name__)

_HOLD_S = 30.0
"""Seconds to hold back an actor process's rows while it cannot be attributed yet: the
GCS lists a new actor a moment after it starts, and Tune names a trainable's trial
only once its set-up is done (memsweep's own trainable registers at once)."""

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
        self.budget = budget
        self.error: BaseException | None = None
        self.rows_written = 0
        self._fleet = SamplerFleet(config)
        self._processes = TrialProcesses()
        self._lock = threading.Lock()
        self._progress: list[dict[str, object]] = []
        self._events: list[Event] = []
        self._trial_of_group: dict[str, str] = {}
        self._trial_of_pid: dict[tuple[str, int], str] = {}
        self._trial_of_actor: dict[str, str] = {}
        self._actors: dict[tuple[str, int], ActorInfo] = {}
        self._held: list[tuple[str, pa.Table, float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._over_budget: set[str] = set()
        self._breaches: list[BudgetBreach] = []
        self._pending_kills: dict[str, tuple[TrialKill, float]] = {}
        # Trials that ended before this collector started (finished in an earlier run of a
        # resumed sweep) had their processes sampled by that run's collector, not this one.
        self._started_us = now_us()

    # -- called from Tune's thread ------------------------------------------------------

    def add_progress(self, row: dict[str, object]) -> None:
        """One row of the ``progress`` table (:data:`memsweep.store.schema.PROGRESS`)."""
        with self._lock:
            self._progress.append(row)

    def add_event(
        self,
        kind: str,
        node_id: str | None = None,
        trial_id: str | None = None,
        detail: str | None = None,
    ) -> None:
        """One row of the ``events`` table, stamped now."""
        self._add_events([Event(kind, node_id, trial_id, detail)])

    def _add_events(self, events: list[Event]) -> None:
        with self._lock:
            self._events += events

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

    def trial_memory(self, trial_id: str) -> TrialMemory | None:
        """The trial's memory at memsweep's latest drain, or None before its first sample."""
        return self._processes.memory(trial_id)

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
        self._add_events(self._fleet.follow_membership())
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
        self._fleet.stop_all()
        with contextlib.suppress(Exception):
            self._write_nodes()

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` began: what is unknown now stays unknown."""
        return self._stop.is_set()

    # -- one flush ------------------------------------------------------------------------

    def flush(self, final: bool = False) -> None:
        """Drain, attribute and write once: follow membership, drain every sampler, take
        in what they registered, write the trials table if it changed, attribute and
        write the samples, check the budget, settle kills and unattributed trials, write
        the other tables (the trials table again if that changed it)."""
        if not final:
            self._add_events(self._fleet.follow_membership())
        drained, events = self._fleet.drain_all(final, max(10.0, 3 * self.flush_interval_s))
        self._add_events(events)
        self._take_registrations(drained)
        if drained:
            try:
                self._refresh_actors()
            except Exception as exc:
                # The GCS can be briefly unreachable: keep the last actor table; rows of
                # new processes are held back below.
                log.warning("memsweep: actor table not refreshed: %s", exc)
        # The trials table first (a few rows, only when changed), then the bulky samples:
        # a results disk that fills up during this flush then still holds every trial
        # that started, and their statuses as last known. Written again below if the
        # kills and unattributed trials settled in this flush change it.
        self._write_trials()
        pending = [(b.node_id, b.samples, time.time()) for b in drained if b.samples.num_rows]
        pending = self._held + pending
        self._held = []
        try:
            written = self._write_samples(pending, self.trial_of_group, final)
        except Exception:
            # Nothing drained is dropped on a failed write: it is retried next flush.
            self._held = pending
            raise
        if written is not None:
            self._processes.remember(written)
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
            self.writer.append_rows("events", [e.as_record() for e in events])
        self._write_nodes()
        self._write_trials()

    def _take_registrations(self, drained: list[SamplerDrain]) -> None:
        """The trainables that announced themselves to a sampler, and dropped rounds."""
        events = []
        for batch in drained:
            for reg in batch.registrations:
                if reg.placement_group_id:
                    self.map_group(reg.placement_group_id, reg.trial_id)
                self._trial_of_pid[(reg.node_id, reg.pid)] = reg.trial_id
                events.append(
                    Event("trial_registered", reg.node_id, reg.trial_id, f"pid {reg.pid}")
                )
            if batch.dropped_rounds:
                detail = f"{batch.dropped_rounds} rounds dropped: sampler buffer full"
                events.append(Event("gap", node_id=batch.node_id, detail=detail))
        self._add_events(events)

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

    def _attribute(
        self, node_id: str, raw: pa.Table, trial_of_group: dict[str, str], force: bool = False
    ) -> tuple[pa.Table, pa.Table | None]:
        with self._lock:
            trainables = set(self._trial_of_actor)
        return attribute_samples(
            node_id,
            raw,
            run_id=self.writer.run_id,
            actors=self._actors,
            trial_of_group=trial_of_group,
            trial_of_pid=self._trial_of_pid,
            trainables=trainables,
            force=force,
        )

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

    # -- budgets, kills, unattributed trials ------------------------------------------

    def _check_budget(self, samples: pa.Table) -> None:
        assert self.budget is not None
        for breach in over_budget(samples, self._fleet.used_bytes(), self.budget):
            if breach.trial_id in self._over_budget:
                continue
            self._over_budget.add(breach.trial_id)
            self.add_event("over_budget", breach.node_id, breach.trial_id, breach.detail)
            log.warning("memsweep: stopping trial %s: %s", breach.trial_id, breach.detail)
            with self._lock:
                self._breaches.append(breach)

    def _resolve_kills(self) -> None:
        with self._lock:
            pending = dict(self._pending_kills)
        patience_s = 3 * self.flush_interval_s + 5
        for trial_id, (kill, since) in pending.items():
            found = self._processes.process_of(trial_id, kill.killed_pids)
            if found is None and not self.stopping and time.monotonic() - since < patience_s:
                continue
            kernel = None
            if found is not None and kill.vanished:
                kernel = self._fleet.kernel_oom_killed(found[1], found[0], found[3])
            memory = self._fleet.node_memory(found[1]) if found else (None, None)
            ray_exit = worker_exit(found[1], found[0]) if found is not None else (None, None)
            facts = kill_facts(kill, found, memory, kernel, ray_exit)
            with self._lock:
                self._pending_kills.pop(trial_id, None)
            if facts:
                self.trials.update(trial_id, **facts)

    def _flag_unattributed(self, final: bool) -> None:
        """A trial that ended with no process attributed is an error, never an empty row."""
        attributed = self._processes.trials()
        patience_us = int((_HOLD_S + 3 * self.flush_interval_s) * 1_000_000)
        for row in self.trials.rows():
            if row.ended_at is None or row.trial_id in attributed or row.error == UNATTRIBUTED:
                continue
            if row.ended_at < self._started_us:
                continue
            if not final and now_us() - row.ended_at < patience_us:
                continue
            if row.status == keys.TERMINATED:
                self.trials.update(row.trial_id, status=keys.ERROR, error=UNATTRIBUTED)
            elif not row.error:
                self.trials.update(row.trial_id, error=UNATTRIBUTED)
            log.error("memsweep: trial %s: %s", row.trial_id, UNATTRIBUTED)

    # -- whole tables -------------------------------------------------------------------

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

    def _write_nodes(self) -> None:
        rows = self._fleet.records()
        if rows:
            self.writer.replace("nodes", rows)

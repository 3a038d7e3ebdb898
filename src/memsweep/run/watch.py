"""Attach to a Ray cluster that is already running and record its memory, restarting nothing.

``memsweep watch`` joins the cluster as one more driver (its own namespace), places a
sampler on every node (:class:`~memsweep.collect.collector.Collector`, as a sweep does)
and, since no Tune callback tells it which trial is which, names the trials from the
GCS actor table at every flush (:func:`trials_from_actors`):

- a **Tune trial** is a placement group: Tune gives each trial's trainable one, and the
  trainable's env runners, learners and aggregators are scheduled into it. Its
  trainable is the actor of the group that no other actor of the group created (the
  Tune driver did), its class the ``algorithm`` column (``PPO``, ``ImplicitFunc`` for a
  function trainable). Its trial id is **Tune's own** (``7bc79_00000``) when the
  trainable runs on the watch's node: Tune moves a trainable's working directory to
  ``…/<experiment>/working_dirs/<trial dir>``, whose name holds the trial id, and writes
  the trial's config to ``…/<experiment>/driver_artifacts/<trial dir>/params.json``
  (:func:`tune_trial_of`), which becomes the trial's ``config_json`` (and the keys that
  differ between trials its ``factors_json``). Elsewhere, or with a
  ``trial_dirname_creator`` that drops the id, it is ``pg-`` and the placement group's id;
- a **Ray job**'s actors outside any placement group are trial ``job-`` and the job id;
- the rest (Ray's own processes, idle workers, tasks) are recorded with their role and
  no trial, as in a sweep.

It records until the watched job ends (``--job``), a time limit, or Ctrl-C; the folder is
then what ``memsweep analyze`` reads.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memsweep import result_keys as keys
from memsweep.collect.attribution import ActorInfo
from memsweep.collect.cluster import gcs_actor_table
from memsweep.collect.collector import Collector
from memsweep.collect.sampler import SamplerConfig
from memsweep.collect.trials import TrialsTable, now_us
from memsweep.errors import ClusterError
from memsweep.run.cluster_check import unreachable
from memsweep.spec import SamplingSpec
from memsweep.store import ResultsWriter

_NOT_TRIALS = ("NodeSampler", "JobSupervisor", "_", "ServeController")
"""Actor classes that are Ray's or memsweep's own machinery, never a job's work."""


@dataclass(frozen=True, slots=True)
class WatchedTrial:
    """A trial named from the actor table."""

    trial_id: str
    """``pg-<placement group id>`` or ``job-<job id>``."""
    kind: str
    """``tune`` (a placement group) or ``job``."""
    trainable_actor_id: str | None
    """The placement group's root actor (the trial's trainable); None for a job."""
    trainable_class: str | None
    job_id: str | None
    alive: bool
    """Some actor of it is alive."""


TUNE_TRIAL_DIR_RE = re.compile(r"_(?P<trial_id>[0-9a-f]{5}_\d{5})(?:_|$)")
"""Tune's trial id inside its trial directory's name (``hold_7bc79_00000_0_x=1_2026-…``)."""

NAME_WAIT_S = 10.0
"""How long a trial whose trainable on this node is alive waits for its Tune trial id
(a trainable is in its trial directory once created) before it is recorded as ``pg-<id>``."""


@dataclass(frozen=True, slots=True)
class TuneTrial:
    """What a trainable's working directory tells of its Tune trial."""

    trial_id: str
    """Tune's trial id, as Tune's results and ``ResultGrid`` name it."""
    trial_dir: Path
    """The trainable's working directory: ``…/<experiment>/working_dirs/<trial dir>``."""

    @property
    def params_path(self) -> Path:
        """Where Tune's driver wrote the trial's config (on the Tune driver's node)."""
        experiment = self.trial_dir.parent.parent
        return experiment / "driver_artifacts" / self.trial_dir.name / "params.json"

    def config(self) -> dict[str, Any] | None:
        """The trial's config from ``params.json``; None until Tune wrote it (or if the
        Tune driver runs on another node)."""
        try:
            config = json.loads(self.params_path.read_text())
        except (OSError, ValueError):
            return None
        return config if isinstance(config, dict) else None


def tune_trial_of(pid: int) -> TuneTrial | None:
    """The Tune trial of the trainable process ``pid`` on this node, from its working
    directory (``/proc/PID/cwd``); None when it is not (yet) in a Tune trial directory."""
    try:
        cwd = Path(f"/proc/{pid}/cwd").readlink()
    except OSError:
        return None
    found = TUNE_TRIAL_DIR_RE.search(cwd.name)
    if cwd.parent.name != "working_dirs" or found is None:
        return None
    return TuneTrial(found["trial_id"], cwd)


@dataclass(frozen=True, slots=True)
class WatchOutcome:
    """What a watch recorded."""

    storage: str
    trials: int
    seconds: float
    why_stopped: str
    """``job ended``, ``time limit`` or ``interrupted``."""


def trials_from_actors(actors: Iterable[ActorInfo]) -> list[WatchedTrial]:
    """Trials from the actor table: one per placement group, one per job for its actors
    outside any group. Pure: testable without Ray."""
    groups: dict[str, list[ActorInfo]] = {}
    jobs: dict[str, list[ActorInfo]] = {}
    for actor in actors:
        if actor.class_name.startswith(_NOT_TRIALS):
            continue
        if actor.placement_group_id:
            groups.setdefault(actor.placement_group_id, []).append(actor)
        elif actor.job_id:
            jobs.setdefault(actor.job_id, []).append(actor)
    out = []
    for group, members in groups.items():
        workers = {m.worker_id for m in members}
        roots = [m for m in members if m.owner_worker_id not in workers] or members
        root = roots[0]
        out.append(
            WatchedTrial(
                f"pg-{group}",
                "tune",
                root.actor_id,
                root.class_name,
                root.job_id,
                any(m.alive for m in members),
            )
        )
    for job, members in jobs.items():
        alive = any(m.alive for m in members)
        out.append(WatchedTrial(f"job-{job}", "job", None, None, job, alive))
    return out


def unreachable_error(address: str, exc: Exception) -> ClusterError:
    """The one line for a cluster ``watch`` cannot join: the first line of Ray's reason and
    the fix; with ``auto`` (a Ray on this node, found by its running GCS) the fix is to
    start one, not ``--address auto`` again."""
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip(".")
    fix = (
        "Start Ray on this node first (`ray start --head`), or give the address "
        "`ray status` shows on a node of the cluster (HOST:PORT of the GCS)"
        if address == "auto"
        else "Give the address `ray status` shows (HOST:PORT of the GCS), or run on a "
        "node of the cluster with --address auto"
    )
    return ClusterError(f"Cannot reach the Ray cluster at {address}: {reason}. {fix}.")


@contextlib.contextmanager
def _connected(address: str) -> Iterator[None]:
    import ray

    try:
        reason = unreachable(address)
        if reason is not None:
            raise ConnectionError(reason)
        join_cluster(address)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise unreachable_error(address, exc) from None
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            ray.shutdown()


def join_cluster(address: str) -> None:
    """Join the running cluster at ``address``: the first call of :func:`watch` that needs
    Ray (everything before it, the argument and reachability checks, does not)."""
    import ray

    ray.init(address=address, namespace="memsweep-watch", log_to_driver=False)


def _job_ended(job_id: str) -> bool | None:
    """True once the GCS marks ``job_id`` dead; None if the GCS does not know it."""
    from ray._private.state import state

    for job in state.job_table():  # type: ignore[no-untyped-call]
        if job["JobID"] == job_id:
            return bool(job.get("IsDead"))
    return None


class _Namer:
    """Keeps the trials table and the collector's maps in step with the actor table."""

    def __init__(self, collector: Collector, study: str, job: str | None, node_id: str) -> None:
        self.collector = collector
        self.study = study
        self.job = job
        self.node_id = node_id
        """This process's node: the trainables whose working directory it can read."""
        self.known: dict[str, bool] = {}
        self.names: dict[str, str] = {}
        """Placement group id → the trial id it is recorded under."""
        self.first_alive: dict[str, float] = {}
        self.without_config: dict[str, TuneTrial] = {}
        """Trials named by Tune whose params.json was not there yet."""

    def trial_id(self, trial: WatchedTrial, where: Mapping[str, tuple[str, int]]) -> str | None:
        """Tune's id for a placement-group trial, or ``pg-<id>`` when it cannot be known;
        None while its trainable on this node is still being created (Tune moves it to
        its trial directory as it is created) or, for :data:`NAME_WAIT_S`, after."""
        group = trial.trial_id.removeprefix("pg-")
        if group in self.names:
            return self.names[group]
        node, pid = where.get(trial.trainable_actor_id or "", ("", 0))
        if node != self.node_id:
            self.names[group] = trial.trial_id  # Its working directory is on another node.
            return trial.trial_id
        if not trial.alive:
            return None  # Being created (or over before it was seen: never recorded).
        tune = tune_trial_of(pid)
        first = self.first_alive.setdefault(group, time.monotonic())
        if tune is not None:
            self.names[group] = tune.trial_id
            self.without_config[tune.trial_id] = tune
        elif time.monotonic() - first < NAME_WAIT_S:
            return None
        else:
            self.names[group] = trial.trial_id
        return self.names[group]

    def refresh(self) -> None:
        table = gcs_actor_table()
        if self.job is not None:
            table = [entry for entry in table if entry[1].job_id == self.job]
        where = {info.actor_id: key for key, info in table}
        for trial in trials_from_actors(info for _, info in table):
            trial_id = trial.trial_id
            if trial.kind == "tune":
                group = trial.trial_id.removeprefix("pg-")
                named = self.trial_id(trial, where)
                if named is None:
                    continue  # Named at a later refresh, by Tune's id.
                trial_id = named
                self.collector.map_group(group, trial_id)
                if trial.trainable_actor_id is not None:
                    self.collector.map_actor(trial.trainable_actor_id, trial_id)
            else:
                for (node_id, pid), info in table:
                    if (
                        info.job_id == trial.job_id
                        and not info.placement_group_id
                        and not info.class_name.startswith(_NOT_TRIALS)
                    ):
                        self.collector.map_pid(node_id, pid, trial_id)
            was_alive = self.known.get(trial_id)
            if was_alive is None and not trial.alive:
                continue  # Over before the watch began: nothing of it to record.
            if was_alive is None:
                self.collector.trials.update(
                    trial_id,
                    study=self.study,
                    algorithm=trial.trainable_class,
                    status="running",
                    run_id=self.collector.writer.run_id,
                    started_at=now_us(),
                    placement_group_id=trial.trial_id.removeprefix("pg-")
                    if trial.kind == "tune"
                    else None,
                )
            elif was_alive and not trial.alive:
                self.collector.trials.update(trial_id, status=keys.TERMINATED, ended_at=now_us())
            self.known[trial_id] = trial.alive
        for trial_id, tune in list(self.without_config.items()):
            config = tune.config()
            if config is not None:
                self.collector.trials.set_config(trial_id, config)
                del self.without_config[trial_id]


def watch(
    address: str,
    storage: str,
    *,
    job: str | None = None,
    seconds: float | None = None,
    sampling: SamplingSpec | None = None,
) -> WatchOutcome:
    """Record the running cluster at ``address`` into ``storage`` until ``job`` ends,
    ``seconds`` pass, or SIGINT/SIGTERM; raises :class:`ClusterError` if it cannot attach
    or ``job`` is unknown."""
    sampling = sampling or SamplingSpec()
    started = time.monotonic()
    stop = threading.Event()
    why = "interrupted"
    with _connected(address), _stopped_by_signals(stop):
        if job is not None and _job_ended(job) is None:
            raise ClusterError(
                f"No Ray job {job} in the cluster at {address}: give its id as `ray list "
                "jobs` shows it in JOB_ID (e.g. 02000000), not its submission id."
            )
        writer = ResultsWriter(storage)
        config = SamplerConfig(
            interval_s=sampling.interval_s,
            full_interval_s=sampling.full_interval_s,
            pss_max_age_s=sampling.pss_max_age_s,
            pss_cpu_share=sampling.pss_cpu_share,
        )
        collector = Collector(writer, config, sampling.flush_interval_s, TrialsTable())
        import ray

        namer = _Namer(
            collector,
            storage.rstrip("/").rsplit("/", 1)[-1],
            job,
            ray.get_runtime_context().get_node_id(),
        )
        namer.refresh()
        collector.start()
        try:
            while not stop.wait(min(1.0, sampling.flush_interval_s)):
                namer.refresh()
                if collector.error is not None:
                    raise collector.error
                if job is not None and _job_ended(job):
                    why = "job ended"
                    break
                if seconds is not None and time.monotonic() - started >= seconds:
                    why = "time limit"
                    break
        finally:
            with contextlib.suppress(Exception):
                namer.refresh()
            collector.stop()
    return WatchOutcome(storage, len(collector.trials.rows()), time.monotonic() - started, why)


@contextlib.contextmanager
def _stopped_by_signals(stop: threading.Event) -> Iterator[None]:
    """Ctrl-C (or a SIGTERM) ends the watch cleanly: the last samples are written."""
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):  # Not the main thread: no handlers.
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

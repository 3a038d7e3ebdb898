"""Why a trial ended early: Ray's OOM killer, the kernel's, or memsweep's own budget.

A memory study runs where memory runs out, so the trials that die of it are results,
not holes. This module reads what Ray and the kernel leave behind when they kill a
process and turns it into a trial status and a few figures (the killed pid, the node's
memory at the kill); :mod:`memsweep.collect.callback` writes them to ``trials.parquet``.

Three ways a trial's process is killed for memory:

- **Ray's memory monitor** (``RAY_memory_usage_threshold``, 0.95 by default) kills the
  most recently started worker when the node's used memory crosses the threshold. The
  trial's Tune task then fails with :class:`ray.exceptions.OutOfMemoryError`, whose
  text carries the killed pid and Ray's exact reading of the node. → ``oom_killed``.
- **The kernel's OOM killer** sends SIGKILL. Ray only sees a worker that vanished
  ("SYSTEM_ERROR … (1) the process was killed by the OOM killer, (2) ray stop --force,
  (3) SIGSEGV …"): by itself not a verdict. memsweep calls it ``oom_killed`` only when
  the node's kernel log names that pid in an ``oom-kill``/``Killed process`` record
  after the process started; otherwise ``error``.
- **memsweep's** ``resources.memory_budget``: the collector sees a trial (or a node) over
  the budget and kills the trial's trainable actor. → ``over_budget``.

What is kept of each kill, beside the status (``trials.parquet``, ``docs/schema.md``):

- **Ray's own word.** The killed worker's exit type and detail from the GCS worker
  table (``NODE_OUT_OF_MEMORY`` for the memory monitor; what
  ``ray.util.state.list_workers(detail=True)`` serves where a dashboard runs) and the
  kill report's table of the node's top memory users (Ray ≥ 2.56 prints it in the
  error: ``Top 10 memory users: PID	MEM(GB)	COMMAND``), with each selected worker's
  ``actual memory used`` (:func:`memory_users`).
- **The kernel's word.** The ``oom-kill:`` record names the memory cgroup that ran out
  (``oom_memcg``) and the ``Killed process`` record the process's anon RSS; that
  cgroup's counters (cgroup v2 ``memory.events`` ``oom_kill`` and ``memory.peak``; v1
  ``memory.oom_control`` ``oom_kill`` and ``memory.max_usage_in_bytes``) are read at
  once (:mod:`memsweep.collect.kernel`).
- **Per node, every round.** The node's cgroup's ``memory.events`` counters and the
  kernel's memory pressure (PSI, ``memory.pressure`` or ``/proc/pressure/memory``) go
  into ``node_samples`` (:mod:`memsweep.collect.probe`; parsers in
  :mod:`memsweep.collect.kernel`).

This module is pure (no Ray import). :mod:`memsweep.run.workarounds.tune` has the Tune side.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from memsweep import result_keys as keys
from memsweep.collect.kernel import KernelKill
from memsweep.units import format_bytes

OOM_KILLED = keys.OOM_KILLED
OVER_BUDGET = keys.OVER_BUDGET
ERROR = keys.ERROR

_RAY_OOM = re.compile(
    r"killed due to the node running low on memory|OutOfMemoryError|"
    r"exceeds the memory usage threshold",
    re.IGNORECASE,
)
_RAY_NODE = re.compile(r"Memory on the node \(IP: ([^,]+), ID: ([0-9a-f]+)\)")
_RAY_USAGE_BYTES = re.compile(
    r"Memory usage (\d+)B exceeded threshold of (\d+)B \([^)]*? of (\d+)B limit\)"
)
_RAY_USAGE_GB = re.compile(r"was ([\d.]+)GB used / ([\d.]+)GB limit")
_RAY_USAGE_GB_OLD = re.compile(r"was running was ([\d.]+)GB / ([\d.]+)GB")
_RAY_SELECTED = re.compile(r"^Selected to kill:.*?\bpid=(\d+)", re.MULTILINE)
_ANY_PID = re.compile(r"\bpid=(\d+)")
_ACTOR_PID = re.compile(r"^\s*pid: (\d+)\s*$", re.MULTILINE)
_ACTOR_IP = re.compile(r"^\s*ip: (\S+)\s*$", re.MULTILINE)
_WORKER_VANISHED = re.compile(r"Worker exit type: SYSTEM_ERROR|worker process has died")

_TOP_USERS = re.compile(r"^Top \d+ memory users:\s*PID\tMEM\(GB\)\tCOMMAND\s*$", re.MULTILINE)
_TOP_USER_ROW = re.compile(r"^(\d+)\t([\d.]+)\t(.*)$")
_WORKER_USED = re.compile(
    r"task name=([^,]*),.*?\bpid=(\d+), actual memory used=([\d.]+)GB", re.DOTALL
)


@dataclass(frozen=True)
class MemoryUser:
    """One row of Ray's kill report: a process on the killed worker's node."""

    pid: int
    memory_bytes: int
    """Ray's reading (it prints GB with two decimals, so ±5 MB)."""
    command: str
    """Ray's text: the process title (``ray::Class.method``) or its command line."""
    selected: bool
    """Ray's memory monitor selected this worker to kill."""


def memory_users(text: str) -> tuple[MemoryUser, ...]:
    """The kill report's per-process memory table in a Ray OOM error text (Ray ≥ 2.56:
    ``Top 10 memory users: PID	MEM(GB)	COMMAND`` and one row per process), with the
    workers Ray selected marked; a selected worker missing from the table is added with
    its ``actual memory used``. Empty when the text has no table (older Ray)."""
    selected_part = text.split("Selected to kill:", 1)[1] if "Selected to kill:" in text else ""
    selected_part = selected_part.split("\n(", 1)[0]
    selected = {
        int(pid): (name, int(float(gb) * 1e9))
        for name, pid, gb in _WORKER_USED.findall(selected_part)
    }
    rows: list[MemoryUser] = []
    header = _TOP_USERS.search(text)
    if header:
        for line in text[header.end() :].lstrip("\n").splitlines():
            match = _TOP_USER_ROW.match(line)
            if not match:
                break
            pid = int(match.group(1))
            rows.append(
                MemoryUser(pid, int(float(match.group(2)) * 1e9), match.group(3), pid in selected)
            )
    listed = {row.pid for row in rows}
    for pid, (name, used) in selected.items():
        if pid not in listed:
            rows.append(MemoryUser(pid, used, name, True))
    return tuple(rows)


def memory_users_json(users: tuple[MemoryUser, ...]) -> str | None:
    """``kill_memory_users_json``: a JSON list of {pid, memory_bytes, command, selected}."""
    if not users:
        return None
    return json.dumps(
        [
            {
                "pid": u.pid,
                "memory_bytes": u.memory_bytes,
                "command": u.command,
                "selected": u.selected,
            }
            for u in users
        ]
    )


@dataclass(frozen=True)
class TrialKill:
    """What a failed trial's error text says about how it ended."""

    status: str
    """``oom_killed`` (Ray's memory monitor said so) or ``error``."""
    killed_pids: tuple[int, ...] = ()
    """The processes Ray killed (its memory monitor may kill several at once) or saw
    die; empty when the text names none."""
    node_ip: str | None = None
    """IP of that process's node, as Ray reports it."""
    node_id: str | None = None
    """Ray node id (hex) of that node; Ray's OOM message names it."""
    node_used_bytes: int | None = None
    """Ray's reading of the node's used memory when it decided to kill."""
    node_limit_bytes: int | None = None
    """What Ray compares it with: the node's memory (or its cgroup's limit)."""
    vanished: bool = False
    """Ray only saw the worker disappear (SIGKILL, crash): ask the kernel log."""
    memory_users: tuple[MemoryUser, ...] = ()
    """Ray's kill report: the node's top memory users at the kill (:func:`memory_users`)."""
    summary: str | None = None
    """One line for the trials table's ``error`` column (None: keep the error text)."""


def read_trial_error(text: str) -> TrialKill:
    """Classify a trial's error text (Tune's ``error.txt``): pure, no I/O."""
    if _RAY_OOM.search(text):
        # Ray lists the workers it considered; those it killed are "Selected to kill".
        pids = tuple(int(p) for p in _RAY_SELECTED.findall(text))
        if not pids:
            pids = tuple(int(p) for p in _ANY_PID.findall(text)[:1])
        node = _RAY_NODE.search(text)
        used = limit = None
        exact = _RAY_USAGE_BYTES.search(text)
        if exact:
            used, limit = int(exact.group(1)), int(exact.group(3))
        else:
            approx = _RAY_USAGE_GB.search(text) or _RAY_USAGE_GB_OLD.search(text)
            if approx:
                used = int(float(approx.group(1)) * 10**9)
                limit = int(float(approx.group(2)) * 10**9)
        figure = f" at {format_bytes(used)} of {format_bytes(limit)}" if used and limit else ""
        who = "pid " + ", ".join(str(p) for p in pids) if pids else "the trial's worker"
        return TrialKill(
            status=OOM_KILLED,
            killed_pids=pids,
            node_ip=node.group(1) if node else None,
            node_id=node.group(2) if node else None,
            node_used_bytes=used,
            node_limit_bytes=limit,
            memory_users=memory_users(text),
            summary=f"Ray's memory monitor killed {who}: node memory{figure} crossed "
            "its threshold (RAY_memory_usage_threshold)",
        )
    pid_match = _ACTOR_PID.search(text)
    ip_match = _ACTOR_IP.search(text)
    return TrialKill(
        status=ERROR,
        killed_pids=(int(pid_match.group(1)),) if pid_match else (),
        node_ip=ip_match.group(1) if ip_match else None,
        vanished=bool(_WORKER_VANISHED.search(text)),
    )


@dataclass(frozen=True)
class MemoryBudget:
    """memsweep's own limit: stop a trial before the node runs out."""

    limit_bytes: int
    """The budget, bytes."""
    scope: str = "trial"
    """``trial``: the trial's memory now, Σ PSS of its processes on every node (the
    figure whose maximum is the trial's peak, :mod:`memsweep.store.peaks`); ``node``: a
    node's used memory (total − available), whoever uses it."""


@dataclass(frozen=True)
class BudgetBreach:
    """A trial to stop, and why."""

    trial_id: str
    measured_bytes: int
    """The trial's Σ PSS (scope trial) or its node's used memory (scope node)."""
    node_id: str | None
    detail: str


def over_budget(
    samples: Any, node_used_bytes: dict[str, int], budget: MemoryBudget
) -> list[BudgetBreach]:
    """Trials over ``budget`` in the latest sampling round of each node in ``samples``
    (a ``samples``-schema Arrow table, attributed). A trial's memory is Σ PSS of the
    processes in that round, each at its latest PSS reading in ``samples`` (PSS is read
    every ``full_interval_s``; a process without one yet counts its RSS). Scope ``node``:
    on each node whose used memory is over the budget, the trial with the most there."""
    import pyarrow.compute as pc

    rows = samples.filter(pc.is_valid(samples["trial_id"]))
    if rows.num_rows == 0:
        return []
    latest = {
        r["node_id"]: r["ts_max"]
        for r in samples.group_by("node_id").aggregate([("ts", "max")]).to_pylist()
    }
    pss_now: dict[tuple[str, int], tuple[Any, int]] = {}
    in_latest: dict[tuple[str, int], tuple[str, int]] = {}
    for trial_id, node_id, pid, ts, rss, pss in zip(
        rows["trial_id"].to_pylist(),
        rows["node_id"].to_pylist(),
        rows["pid"].to_pylist(),
        rows["ts"].to_pylist(),
        rows["rss_bytes"].to_pylist(),
        rows["pss_bytes"].to_pylist(),
        strict=True,
    ):
        if pss is not None and ((node_id, pid) not in pss_now or ts >= pss_now[(node_id, pid)][0]):
            pss_now[(node_id, pid)] = (ts, int(pss))
        if ts == latest[node_id] and rss is not None:
            in_latest[(node_id, pid)] = (trial_id, int(rss))
    per_node: dict[tuple[str, str], int] = {}
    for (node_id, pid), (trial_id, rss) in in_latest.items():
        held = pss_now[(node_id, pid)][1] if (node_id, pid) in pss_now else rss
        per_node[(trial_id, node_id)] = per_node.get((trial_id, node_id), 0) + held
    breaches: list[BudgetBreach] = []
    if budget.scope == "trial":
        per_trial: dict[str, int] = {}
        for (trial_id, _node), held in per_node.items():
            per_trial[trial_id] = per_trial.get(trial_id, 0) + held
        for trial_id, held in sorted(per_trial.items()):
            if held > budget.limit_bytes:
                breaches.append(
                    BudgetBreach(
                        trial_id,
                        held,
                        None,
                        f"over memory_budget: the trial's processes held {format_bytes(held)} "
                        f"(Σ PSS), budget {format_bytes(budget.limit_bytes)} per trial",
                    )
                )
        return breaches
    for node_id, used in sorted(node_used_bytes.items()):
        if used <= budget.limit_bytes:
            continue
        here = {t: held for (t, n), held in per_node.items() if n == node_id}
        if not here:
            continue
        trial_id = max(here, key=lambda t: here[t])
        breaches.append(
            BudgetBreach(
                trial_id,
                used,
                node_id,
                f"over memory_budget: node {node_id[:8]} used {format_bytes(used)}, budget "
                f"{format_bytes(budget.limit_bytes)} per node; this trial held the most there "
                f"({format_bytes(here[trial_id])} Σ PSS)",
            )
        )
    return breaches


def kill_facts(
    kill: TrialKill,
    process: tuple[int, str, str, float | None] | None,
    node_memory: tuple[int | None, int | None],
    kernel: KernelKill | None,
    ray_exit: tuple[str | None, str | None] = (None, None),
) -> dict[str, Any]:
    """The trials-table columns to add once the killed process is known: ``process`` is
    (pid, node id, role, create time) from the samples, ``node_memory`` (used, available)
    bytes from that node's last sample, ``kernel`` the node's kernel log's word
    (:func:`kernel_kill`), ``ray_exit`` the worker's (exit type, exit detail) from Ray's
    worker table. Ray's kill report's table is kept whether or not the process was seen."""
    facts: dict[str, Any] = {}
    users = memory_users_json(kill.memory_users)
    if users is not None:
        facts["kill_memory_users_json"] = users
    if ray_exit[0] is not None:
        facts.update(ray_exit_type=ray_exit[0], ray_exit_detail=ray_exit[1] or None)
    if process is None:
        return facts
    pid, node_id, role, _ = process
    facts.update(killed_pid=pid, killed_role=role, killed_node_id=node_id)
    if kill.node_used_bytes is None:
        facts.update(kill_node_used_bytes=node_memory[0], kill_node_available_bytes=node_memory[1])
    if kernel is not None and kernel.killed:
        facts.update(kill_cgroup=kernel.memcg, kill_anon_rss_bytes=kernel.anon_rss_bytes)
        if kernel.counters is not None:
            facts.update(
                kill_cgroup_oom_kills=kernel.counters.oom_kills,
                kill_cgroup_peak_bytes=kernel.counters.peak_bytes,
            )
    if kill.status == ERROR and kill.vanished and kernel is not None and kernel.killed:
        where = f" in memory cgroup {kernel.memcg}" if kernel.memcg else ""
        facts.update(
            status=OOM_KILLED,
            error=f"the kernel's OOM killer killed pid {pid} ({role}){where}; "
            "Ray saw its worker vanish",
        )
    return facts

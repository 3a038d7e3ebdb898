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

This module is pure (no Ray import): the per-node sampler uses its kernel-log
reader. :mod:`memsweep.run.workarounds.tune` has the Tune side.
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass
from typing import Any

from memsweep import result_keys as keys
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

_KMSG_OOM = (
    re.compile(r"oom-kill:.*?[,:]pid=(\d+)[,\s]"),
    re.compile(r"Killed process (\d+) \("),
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


def kernel_oom_kills(records: list[str]) -> dict[int, float]:
    """pid → seconds since boot of the kernel's OOM kills in ``/dev/kmsg`` records.

    A record is ``"PRI,SEQ,USEC,FLAGS;message"``; the kernel writes both an
    ``oom-kill:…,pid=N,…`` line and ``Killed process N (name) …`` for one kill.
    """
    kills: dict[int, float] = {}
    for record in records:
        head, _, message = record.partition(";")
        fields = head.split(",")
        if len(fields) < 3 or not fields[2].isdigit():
            continue
        for pattern in _KMSG_OOM:
            match = pattern.search(message + " ")
            if match:
                kills[int(match.group(1))] = int(fields[2]) / 1e6
    return kills


def read_kmsg(path: str = "/dev/kmsg", max_records: int = 100_000) -> list[str] | None:
    """The kernel log's records still in its ring buffer; None if it cannot be read
    (not Linux, not permitted: ``kernel.dmesg_restrict``)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    records: list[str] = []
    try:
        while len(records) < max_records:
            try:
                data = os.read(fd, 8192)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EPIPE:
                    # The ring buffer overwrote the record we were at: go on.
                    continue
                break
            if not data:
                break
            records.append(data.decode("utf-8", errors="replace").split("\n", 1)[0])
    finally:
        os.close(fd)
    return records


def kernel_killed(
    pid: int, started_since_boot_s: float | None, records: list[str] | None
) -> bool | None:
    """Did the kernel OOM-kill ``pid`` (the process started ``started_since_boot_s``
    after boot)? None when the kernel log is unreadable."""
    if records is None:
        return None
    when = kernel_oom_kills(records).get(pid)
    if when is None:
        return False
    # A kill of an earlier process with the same pid does not count.
    return started_since_boot_s is None or when >= started_since_boot_s - 1.0


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
    kernel_killed_it: bool | None,
) -> dict[str, Any]:
    """The trials-table columns to add once the killed process is known: ``process`` is
    (pid, node id, role, create time) from the samples, ``node_memory`` (used, available)
    bytes from that node's last sample, ``kernel_killed_it`` the node's kernel log's word."""
    if process is None:
        return {}
    pid, node_id, role, _ = process
    facts: dict[str, Any] = {"killed_pid": pid, "killed_role": role, "killed_node_id": node_id}
    if kill.node_used_bytes is None:
        facts.update(kill_node_used_bytes=node_memory[0], kill_node_available_bytes=node_memory[1])
    if kill.status == ERROR and kill.vanished and kernel_killed_it:
        facts.update(
            status=OOM_KILLED,
            error=f"the kernel's OOM killer killed pid {pid} ({role}); Ray saw its worker vanish",
        )
    return facts

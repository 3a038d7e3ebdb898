"""Which processes a node's sampler reads: the raylet and everything below it, on the
head node the GCS, dashboard and monitor of the same Ray session, the driver, and the
sampler itself, each with its system label (``raylet``, ``gcs``, ``ray_system``,
``driver``, ``memsweep``; none for Ray workers).

Incremental: ``/proc`` is listed every round of discovery, and only new pids are read.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import psutil

from memsweep.collect import probe


def name_of(title: str | None, comm: str) -> str:
    """The process title: ``ray::ClassName.method`` for Ray workers, else the executable's
    name (the kernel's 15-character ``comm``, completed from the command line)."""
    if title and title.startswith("ray::"):
        return title
    if title and len(comm) >= 15:
        base = title.split(" ", 1)[0].rsplit("/", 1)[-1]
        if base.startswith(comm):
            return base
    return comm or "?"


class ProcessTable:
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


class RayProcesses:
    """The processes to sample on one node; see the module docstring."""

    def __init__(
        self,
        node_id: str,
        is_head: bool,
        driver_pid: int | None,
        driver_node_id: str | None,
        raylet_pid: int | None = None,
    ) -> None:
        self.node_id = node_id
        self.is_head = is_head
        self.driver_pid = driver_pid
        self.driver_node_id = driver_node_id
        self.table = ProcessTable()
        self._own_pid = os.getpid()
        self._system_verdict: dict[int, str | None] = {}
        self.raylet_pid = raylet_pid if raylet_pid is not None else self._find_raylet()
        self._session_marker = self._find_session_marker()

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
        if self.raylet_pid is None:
            return None
        try:
            for arg in psutil.Process(self.raylet_pid).cmdline():
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
        for pid in self.table.refresh():
            self._system_verdict.pop(pid, None)
        for pid in list(self._system_verdict):
            if pid not in self.table.parent:
                del self._system_verdict[pid]
        parents, names = self.table.parent, self.table.name
        children = self.table.children()

        def subtree(root: int) -> Iterable[int]:
            stack = [root]
            while stack:
                pid = stack.pop()
                yield pid
                stack.extend(children.get(pid, ()))

        found: dict[int, str | None] = {}
        if self.raylet_pid is not None and self.raylet_pid in parents:
            for pid in subtree(self.raylet_pid):
                found[pid] = None
            found[self.raylet_pid] = "raylet"
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
        driver = self.driver_pid
        if driver and self.driver_node_id == self.node_id and driver in parents:
            found[driver] = "driver"
        found[self._own_pid] = "memsweep"
        return found

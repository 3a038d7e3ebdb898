"""Reading one process's and one node's memory (Linux).

Two costs, two rates. ``/proc/PID/status`` is one small read and gives resident size,
swap and the kernel's peak-RSS high-water mark (``VmHWM``): the peak stays visible even
when a spike falls between two samples. USS and PSS need ``/proc/PID/smaps_rollup``
(through psutil), which walks the process's page tables: a few hundred µs for a large
process, so the sampler reads it at a lower rate.

GPU memory comes from NVML (nvidia-ml-py) where a driver is present; elsewhere every GPU
figure is ``None`` rather than 0, so "no GPU" is not confused with "no GPU memory used".
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

_STATUS_KEYS = {
    b"VmRSS:": "rss_bytes",
    b"VmHWM:": "hwm_bytes",
    b"VmSwap:": "swap_bytes",
    b"RssAnon:": "rss_anon_bytes",
    b"RssFile:": "rss_file_bytes",
    b"RssShmem:": "rss_shmem_bytes",
    b"PPid:": "ppid",
}


@dataclass(frozen=True, slots=True)
class StatusMemory:
    """Memory of one process from ``/proc/PID/status``; all sizes in bytes."""

    rss_bytes: int
    """Resident set size now (``VmRSS``)."""
    hwm_bytes: int
    """Peak resident set size since the process started (``VmHWM``)."""
    swap_bytes: int
    """Swapped-out anonymous memory (``VmSwap``)."""
    rss_anon_bytes: int
    """Resident anonymous pages: heap, stacks, private mappings."""
    rss_file_bytes: int
    """Resident file-backed pages: shared libraries, mapped files."""
    rss_shmem_bytes: int
    """Resident shared-memory pages, Ray's object store (``/dev/shm``) among them."""
    ppid: int
    """Parent process id."""


def read_status(pid: int) -> StatusMemory | None:
    """One process's memory from ``/proc/PID/status``; ``None`` if it is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:  # noqa: PTH123 (hot path)
            data = handle.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    values: dict[str, int] = dict.fromkeys(_STATUS_KEYS.values(), 0)
    for line in data.splitlines():
        key = line.split(None, 1)[0] if line else b""
        name = _STATUS_KEYS.get(key)
        if name is None:
            continue
        parts = line.split()
        # Sizes are printed in kB (KiB); PPid is a bare number.
        values[name] = int(parts[1]) * (1 if name == "ppid" else 1024)
    if values["rss_bytes"] == 0 and values["hwm_bytes"] == 0:
        # A zombie or kernel thread: nothing resident to report.
        return None
    return StatusMemory(**values)


@dataclass(frozen=True, slots=True)
class FullMemory:
    """USS and PSS of one process, in bytes."""

    uss_bytes: int
    """Unique set size: pages only this process maps; what killing it would free."""
    pss_bytes: int
    """Proportional set size: shared pages divided among their sharers, so that summing
    PSS over processes does not count shared libraries or the object store twice."""


def read_full(process: psutil.Process) -> FullMemory | None:
    """USS and PSS via psutil (``smaps_rollup``); ``None`` if gone or not permitted."""
    try:
        info = process.memory_full_info()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
        return None
    return FullMemory(uss_bytes=int(info.uss), pss_bytes=int(getattr(info, "pss", info.uss)))


@dataclass(frozen=True, slots=True)
class NodeMemory:
    """A node's memory now, in bytes; cgroup figures are ``None`` where there is none."""

    total_bytes: int
    available_bytes: int
    used_bytes: int
    shmem_bytes: int
    swap_used_bytes: int
    cgroup_limit_bytes: int | None
    cgroup_usage_bytes: int | None


def _cgroup_dir(pid: int) -> Path | None:
    """The cgroup-v2 directory of ``pid`` (``0::/path`` in ``/proc/PID/cgroup``)."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("0::"):
            return Path("/sys/fs/cgroup") / line[3:].lstrip("/")
    return None


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return None if text in {"", "max"} else int(text)


def cgroup_memory(pid: int) -> tuple[int | None, int | None]:
    """(limit, usage) of the nearest memory-limited cgroup of ``pid``.

    The limit that matters for an OOM kill is the tightest one on the path to the root,
    so walk up from the process's own cgroup until one has ``memory.max`` set. Usage is
    read from the same level. Both ``None`` where cgroups are not mounted (v1 hosts
    report their ``memory.limit_in_bytes`` instead).
    """
    directory = _cgroup_dir(pid)
    root = Path("/sys/fs/cgroup")
    while directory is not None and (directory == root or root in directory.parents):
        limit = _read_int(directory / "memory.max")
        if limit is not None:
            return limit, _read_int(directory / "memory.current")
        if directory == root:
            break
        directory = directory.parent
    v1 = root / "memory"
    usage = _read_int(v1 / "memory.usage_in_bytes")
    if usage is not None:
        limit = _read_int(v1 / "memory.limit_in_bytes")
        # cgroup v1 writes "no limit" as a page-rounded 2**63.
        return (limit if limit is not None and limit < 2**60 else None), usage
    own = _cgroup_dir(pid)
    return None, (_read_int(own / "memory.current") if own is not None else None)


def read_node(cgroup_pid: int | None = None) -> NodeMemory:
    """The node's memory; cgroup figures for the cgroup of ``cgroup_pid`` (default: self)."""
    vm = psutil.virtual_memory()
    swap = psutil.swap_memory()
    limit, usage = cgroup_memory(cgroup_pid or os.getpid())
    return NodeMemory(
        total_bytes=int(vm.total),
        available_bytes=int(vm.available),
        used_bytes=int(vm.total - vm.available),
        shmem_bytes=int(getattr(vm, "shared", 0)),
        swap_used_bytes=int(swap.used),
        cgroup_limit_bytes=limit,
        cgroup_usage_bytes=usage,
    )


class GpuProbe:
    """Per-process and total GPU memory through NVML; inert without a driver.

    **Ownership.** One instance per sampler; NVML is initialised once and shut down in
    :meth:`close`.
    """

    def __init__(self) -> None:
        self._nvml: Any = None
        self._handles: list[Any] = []
        try:
            import pynvml

            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            self._nvml = pynvml
        except Exception:
            # No driver, no library, no device: GPU columns stay null.
            self._nvml = None

    @property
    def available(self) -> bool:
        return self._nvml is not None and bool(self._handles)

    def per_pid(self) -> dict[int, int]:
        """GPU bytes used per pid, summed over devices; empty without NVML."""
        used: dict[int, int] = {}
        if not self.available:
            return used
        for handle in self._handles:
            with contextlib.suppress(Exception):
                for proc in self._nvml.nvmlDeviceGetComputeRunningProcesses(handle):
                    if proc.usedGpuMemory is not None:
                        used[proc.pid] = used.get(proc.pid, 0) + int(proc.usedGpuMemory)
        return used

    def total_used(self) -> int | None:
        if not self.available:
            return None
        total = 0
        for handle in self._handles:
            with contextlib.suppress(Exception):
                total += int(self._nvml.nvmlDeviceGetMemoryInfo(handle).used)
        return total

    def close(self) -> None:
        if self._nvml is not None:
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()
            self._nvml = None

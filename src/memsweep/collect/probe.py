"""Reading one process's and one node's memory (Linux).

Two costs, two rates. ``/proc/PID/status`` is one small read (kept open and re-read
with ``os.pread`` by :class:`ProcFiles`, parsing only the fields used) and gives resident size,
swap and the kernel's peak-RSS high-water mark (``VmHWM``): the peak stays visible even
when a spike falls between two samples. USS and PSS need ``/proc/PID/smaps_rollup``
(through psutil), which walks the process's page tables: a few hundred µs for a large
process, so the sampler reads it at a lower rate.

GPU memory comes from NVML (nvidia-ml-py) where a driver is present; elsewhere every GPU
figure is ``None`` rather than 0, so "no GPU" is not confused with "no GPU memory used".

Length (~510 lines): every figure read from ``/proc`` and ``/sys`` for one process and one
node, each with the kernel field it comes from; the kernel's OOM and cgroup records are
in :mod:`memsweep.collect.kernel`.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memsweep.collect.kernel import CgroupCounters, Pressure, parse_pressure, read_cgroup_counters


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


def _kib(data: bytes, key: bytes) -> int:
    """The number after ``key`` in a ``/proc`` file printed in kB, in bytes (0 if absent)."""
    start = data.find(key)
    if start < 0:
        return 0
    start += len(key)
    return int(data[start : data.index(b"kB", start)]) * 1024


StatusFields = tuple[int, int, int, int, int, int, int]
"""(rss, hwm, swap, rss_anon, rss_file, rss_shmem) in bytes, then ppid: the fields of
:class:`StatusMemory` in its order, as a plain tuple for the sampler's hot loop."""


def parse_status_fields(data: bytes) -> StatusFields | None:
    """The fields memsweep uses from the text of ``/proc/PID/status``, and only those;
    ``None`` for a zombie or kernel thread (nothing resident).

    The kernel prints ``VmHWM`` to ``VmSwap`` on eleven consecutive lines (``VmRSS``,
    ``RssAnon``, ``RssFile`` and ``RssShmem`` among them, Linux ≥ 4.5): one split of that
    block reads all six; any other layout is read field by field.
    """
    ppid_at = data.find(b"\nPPid:")
    ppid = int(data[ppid_at + 6 : data.index(b"\n", ppid_at + 6)]) if ppid_at >= 0 else 0
    start = data.find(b"\nVmHWM:")
    end = data.find(b"\nHugetlbPages:", start)
    words = data[start:end].split() if start >= 0 and end >= 0 else []
    if len(words) == 33 and words[3] == b"VmRSS:" and words[30] == b"VmSwap:":
        hwm, rss, swap = int(words[1]) * 1024, int(words[4]) * 1024, int(words[31]) * 1024
        anon, file, shmem = int(words[7]) * 1024, int(words[10]) * 1024, int(words[13]) * 1024
    else:
        hwm, rss = _kib(data, b"\nVmHWM:"), _kib(data, b"\nVmRSS:")
        anon, file = _kib(data, b"\nRssAnon:"), _kib(data, b"\nRssFile:")
        shmem, swap = _kib(data, b"\nRssShmem:"), _kib(data, b"\nVmSwap:")
    if rss == 0 and hwm == 0:
        return None
    return (rss, hwm, swap, anon, file, shmem, ppid)


def parse_status(data: bytes) -> StatusMemory | None:
    """:func:`parse_status_fields` as a :class:`StatusMemory`."""
    fields = parse_status_fields(data)
    return None if fields is None else StatusMemory(*fields)


def read_status(pid: int) -> StatusMemory | None:
    """One process's memory from ``/proc/PID/status``; ``None`` if it is gone. Opens the
    file each time: for repeated reads of one process, :class:`ProcFiles` costs less."""
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:  # noqa: PTH123 (hot path)
            data = handle.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return parse_status(data)


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_READ_SIZE = 16384


@dataclass(frozen=True, slots=True)
class FullMemory:
    """USS and PSS of one process, in bytes."""

    uss_bytes: int
    """Unique set size: pages only this process maps; what killing it would free."""
    pss_bytes: int
    """Proportional set size: shared pages divided among their sharers, so that summing
    PSS over processes does not count shared libraries or the object store twice."""


@dataclass(frozen=True, slots=True)
class ProcStat:
    """The fields memsweep uses from ``/proc/PID/stat``."""

    ppid: int
    name: str
    """The kernel's command name (``comm``, at most 15 characters)."""
    start_ticks: int
    """Start time in clock ticks after boot (with the pid, the process's identity)."""
    cpu_time_s: float
    """User + system CPU seconds since the process started."""


def parse_stat(data: bytes) -> ProcStat:
    """``/proc/PID/stat`` → :class:`ProcStat` (the name may hold spaces and parentheses,
    so the fields are counted from the last ``)``)."""
    open_at, close_at = data.index(b"("), data.rindex(b")")
    fields = data[close_at + 2 :].split()
    return ProcStat(
        ppid=int(fields[1]),
        name=data[open_at + 1 : close_at].decode("utf-8", "replace"),
        start_ticks=int(fields[19]),
        cpu_time_s=(int(fields[11]) + int(fields[12])) / _CLOCK_TICKS,
    )


def parse_smaps_rollup(data: bytes) -> FullMemory:
    """USS (private pages) and PSS from the text of ``/proc/PID/smaps_rollup``."""
    uss = (
        _kib(data, b"\nPrivate_Clean:")
        + _kib(data, b"\nPrivate_Dirty:")
        + _kib(data, b"\nPrivate_Hugetlb:")
    )
    return FullMemory(uss_bytes=uss, pss_bytes=_kib(data, b"\nPss:"))


def _read_file(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, _READ_SIZE)
    finally:
        os.close(fd)


def read_stat(pid: int) -> ProcStat | None:
    """``/proc/PID/stat`` → :class:`ProcStat`; ``None`` if the process is gone."""
    try:
        return parse_stat(_read_file(f"/proc/{pid}/stat"))
    except (OSError, ValueError, IndexError):
        return None


def read_title(pid: int) -> str | None:
    """The first word of the command line (``ray::ClassName.method`` for a Ray worker,
    which retitles itself); ``None`` if gone or a kernel thread."""
    try:
        first = _read_file(f"/proc/{pid}/cmdline").split(b"\0", 1)[0]
    except OSError:
        return None
    return first.decode("utf-8", "replace").strip() if first else None


def read_command_line(pid: int) -> str:
    """The whole command line, words joined by spaces; empty if gone."""
    try:
        return _read_file(f"/proc/{pid}/cmdline").replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def read_full_pid(pid: int) -> FullMemory | None:
    """USS and PSS from ``/proc/PID/smaps_rollup`` (the kernel walks the process's page
    tables: the costly read); ``None`` if gone or not permitted."""
    try:
        data = _read_file(f"/proc/{pid}/smaps_rollup")
    except OSError:
        return None
    return parse_smaps_rollup(data) if data else None


class StatusFile:
    """One process's ``/proc/PID/status``, opened once and re-read with ``os.pread``.

    Re-reading an open file skips the path lookup and the open/close of every sample
    (about half the cost of a read). The descriptor stays bound to the process it was
    opened for: once that exits every read fails, so a reused pid is never read as the
    old process. One descriptor per sampled process.

    **Ownership.** The sampler that opened it closes it (:meth:`close`).
    """

    __slots__ = ("_fd", "pid")

    def __init__(self, pid: int) -> None:
        """Raises ``OSError`` (``FileNotFoundError`` …) if the process is gone."""
        self.pid = pid
        self._fd = os.open(f"/proc/{pid}/status", os.O_RDONLY)

    def read(self) -> StatusMemory | None:
        """The process's memory now; ``None`` once it is gone (or a zombie)."""
        fields = self.read_fields()
        return None if fields is None else StatusMemory(*fields)

    def read_fields(self) -> StatusFields | None:
        """:meth:`read` as a plain tuple (:data:`StatusFields`), for the hot loop."""
        try:
            return parse_status_fields(os.pread(self._fd, _READ_SIZE, 0))
        except (OSError, ValueError):
            return None

    def close(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1


@dataclass(frozen=True, slots=True)
class ProcessPeakInputs:
    """What a trial's live peak needs from one of its processes, in bytes."""

    rss_bytes: int
    """``VmRSS`` now."""
    pss_bytes: int
    """PSS now (``smaps_rollup``; the USS when the kernel gives no PSS)."""
    hwm_bytes: int
    """``VmHWM``: the process's resident high-water mark."""


def read_peak_inputs(pid: int) -> ProcessPeakInputs | None:
    """RSS, PSS and VmHWM of ``pid`` now; ``None`` if it is gone or not readable. Called
    in each of a trial's processes by the trainable, for its Tune results."""
    status = read_status(pid)
    if status is None:
        return None
    full = read_full_pid(pid)
    if full is None:
        return None
    return ProcessPeakInputs(status.rss_bytes, full.pss_bytes, status.hwm_bytes)


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
    cgroup: CgroupCounters | None = None
    """OOM counters of Ray's memory cgroup (``memory.events`` / v1 ``memory.oom_control``)."""
    pressure: Pressure | None = None
    """Memory PSI of Ray's cgroup (v2 ``memory.pressure``) or of the machine
    (``/proc/pressure/memory``); None where the kernel has no PSI."""


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


def _v1_memory_dir(pid: int) -> Path | None:
    """The cgroup-v1 memory cgroup directory of ``pid`` (``N:memory:/path``), if mounted."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) == 3 and "memory" in parts[1].split(","):
            directory = Path("/sys/fs/cgroup/memory") / parts[2].lstrip("/")
            return directory if directory.is_dir() else None
    return None


def counters_dir(pid: int) -> Path | None:
    """Where the OOM counters of ``pid``'s memory cgroup are: the cgroup-v2 directory
    that :func:`cgroup_files` chose (or the process's own), else its v1 memory cgroup."""
    limit_path, usage_path = cgroup_files(pid)
    for path in (limit_path, usage_path):
        if path is not None and (path.parent / "memory.events").exists():
            return path.parent
    own = _cgroup_dir(pid)
    if own is not None and (own / "memory.events").exists():
        return own
    return _v1_memory_dir(pid)


def pressure_file(pid: int) -> Path | None:
    """The memory PSI file for ``pid``: its cgroup-v2 ``memory.pressure`` (the nearest
    with one: hybrid hosts have PSI in the unified hierarchy), else the machine's
    ``/proc/pressure/memory``; None where the kernel has neither."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        if line.startswith("0::"):
            relative = line[3:].lstrip("/")
            for root in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
                candidate = root / relative / "memory.pressure"
                if candidate.exists():
                    return candidate
    machine = Path("/proc/pressure/memory")
    return machine if machine.exists() else None


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return None if text in {"", "max"} else int(text)


def cgroup_files(pid: int) -> tuple[Path | None, Path | None]:
    """(limit file, usage file) of the nearest memory-limited cgroup of ``pid``.

    The limit that matters for an OOM kill is the tightest one on the path to the root,
    so walk up from the process's own cgroup until one has ``memory.max`` set; usage is
    read from the same level. Without a limit: no limit file, and the usage of the
    process's own cgroup. cgroup v1 hosts give ``memory.limit_in_bytes`` and
    ``memory.usage_in_bytes``. ``(None, None)`` where cgroups are not mounted.
    """
    directory = _cgroup_dir(pid)
    root = Path("/sys/fs/cgroup")
    while directory is not None and (directory == root or root in directory.parents):
        if _read_int(directory / "memory.max") is not None:
            return directory / "memory.max", directory / "memory.current"
        if directory == root:
            break
        directory = directory.parent
    v1 = root / "memory"
    if _read_int(v1 / "memory.usage_in_bytes") is not None:
        return v1 / "memory.limit_in_bytes", v1 / "memory.usage_in_bytes"
    own = _cgroup_dir(pid)
    usage = own / "memory.current" if own is not None else None
    return None, (usage if usage is not None and usage.exists() else None)


def _limit(path: Path | None) -> int | None:
    limit = _read_int(path) if path is not None else None
    # cgroup v1 writes "no limit" as a page-rounded 2**63.
    return limit if limit is not None and limit < 2**60 else None


def cgroup_memory(pid: int) -> tuple[int | None, int | None]:
    """(limit, usage) in bytes of the nearest memory-limited cgroup of ``pid``
    (:func:`cgroup_files`); ``None`` where there is none."""
    limit_path, usage_path = cgroup_files(pid)
    return _limit(limit_path), (_read_int(usage_path) if usage_path is not None else None)


def parse_meminfo(data: bytes) -> tuple[int, int, int, int]:
    """(total, available, Shmem, swap used) in bytes from the text of ``/proc/meminfo``."""
    total = _kib(data, b"MemTotal:")
    return (
        total,
        _kib(data, b"\nMemAvailable:"),
        _kib(data, b"\nShmem:"),
        _kib(data, b"\nSwapTotal:") - _kib(data, b"\nSwapFree:"),
    )


class NodeFiles:
    """``/proc/meminfo`` and the cgroup's usage file, opened once and re-read with
    ``os.pread``; the cgroup limit (which rarely changes) is re-read on :meth:`refresh`.

    **Ownership.** The sampler that opened it closes it (:meth:`close`).
    """

    def __init__(self, cgroup_pid: int | None = None) -> None:
        limit_path, usage_path = cgroup_files(cgroup_pid or os.getpid())
        self._limit_path = limit_path
        self._limit_bytes = _limit(limit_path)
        self._meminfo = os.open("/proc/meminfo", os.O_RDONLY)
        self._usage = -1
        if usage_path is not None:
            with contextlib.suppress(OSError):
                self._usage = os.open(usage_path, os.O_RDONLY)
        self._counters_dir = counters_dir(cgroup_pid or os.getpid())
        self._counters: CgroupCounters | None = None
        self._pressure = -1
        pressure = pressure_file(cgroup_pid or os.getpid())
        if pressure is not None:
            with contextlib.suppress(OSError):
                self._pressure = os.open(pressure, os.O_RDONLY)

    def refresh(self) -> None:
        """Re-read the cgroup's limit."""
        self._limit_bytes = _limit(self._limit_path)

    def read(self, counters: bool = True) -> NodeMemory:
        """The node's memory now; the cgroup's OOM counters (a few files opened by name)
        are read again only with ``counters``, else the last ones are repeated."""
        total, available, shmem, swap_used = parse_meminfo(os.pread(self._meminfo, _READ_SIZE, 0))
        usage = None
        if self._usage >= 0:
            with contextlib.suppress(OSError, ValueError):
                usage = int(os.pread(self._usage, 64, 0))
        pressure = None
        if self._pressure >= 0:
            with contextlib.suppress(OSError):
                pressure = parse_pressure(os.pread(self._pressure, 512, 0).decode())
        if counters and self._counters_dir is not None:
            self._counters = read_cgroup_counters(self._counters_dir)
        return NodeMemory(
            total_bytes=total,
            available_bytes=available,
            used_bytes=total - available,
            shmem_bytes=shmem,
            swap_used_bytes=swap_used,
            cgroup_limit_bytes=self._limit_bytes,
            cgroup_usage_bytes=usage,
            cgroup=self._counters,
            pressure=pressure,
        )

    def close(self) -> None:
        for fd in (self._meminfo, self._usage, self._pressure):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._meminfo = self._usage = self._pressure = -1


def read_node(cgroup_pid: int | None = None) -> NodeMemory:
    """The node's memory; cgroup figures for the cgroup of ``cgroup_pid`` (default: self)."""
    files = NodeFiles(cgroup_pid)
    try:
        return files.read()
    finally:
        files.close()


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

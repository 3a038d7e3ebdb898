"""What the kernel says about memory: its OOM killer's records in the kernel log, a memory
cgroup's counters (cgroup v2 ``memory.events``/``memory.peak``, v1
``memory.oom_control``/``memory.max_usage_in_bytes``) and memory pressure (PSI). Pure (no
Ray import): the per-node sampler reads the kernel log with it, the probe the counters and
PSI of every round, :mod:`memsweep.collect.faults` the kill facts."""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass
from pathlib import Path

_KMSG_OOM = (
    re.compile(r"oom-kill:.*?[,:]pid=(\d+)[,\s]"),
    re.compile(r"Killed process (\d+) \("),
)
_KMSG_MEMCG = re.compile(r"oom-kill:.*?\boom_memcg=([^,]*),.*?[,:]pid=(\d+)[,\s]")
_KMSG_ANON_RSS = re.compile(r"Killed process (\d+) \(.*?anon-rss:(\d+)kB")


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


def parse_flat_keyed(text: str) -> dict[str, int]:
    """A cgroup "flat keyed" file (``memory.events``, v1 ``memory.oom_control``):
    ``key value`` per line → {key: value}; lines that are not that are skipped."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key and value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


@dataclass(frozen=True)
class Pressure:
    """Pressure stall information for memory (``/proc/pressure/memory`` or a cgroup-v2
    ``memory.pressure``): the share of wall time some (or all) runnable tasks of the
    scope stalled waiting for memory (reclaim, swap-in, thrashing)."""

    some_avg10: float
    """% of the last 10 s in which at least one task stalled on memory."""
    full_avg10: float | None
    """% of the last 10 s in which every non-idle task stalled at once (null where the
    kernel gives no ``full`` line)."""
    some_total_us: int
    """Cumulative stall time, µs (some); differences between samples give the stall of
    the interval."""
    full_total_us: int | None


def parse_pressure(text: str) -> Pressure | None:
    """A PSI file's text → :class:`Pressure`; None if it has no ``some`` line."""
    lines: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        lines[kind] = dict(item.split("=", 1) for item in rest.split() if "=" in item)
    some, full = lines.get("some"), lines.get("full")
    try:
        if some is None:
            return None
        return Pressure(
            some_avg10=float(some["avg10"]),
            full_avg10=float(full["avg10"]) if full else None,
            some_total_us=int(some["total"]),
            full_total_us=int(full["total"]) if full else None,
        )
    except (KeyError, ValueError):
        return None


@dataclass(frozen=True)
class CgroupCounters:
    """A memory cgroup's OOM counters: cgroup v2 ``memory.events`` and ``memory.peak``,
    or v1 ``memory.oom_control``, ``memory.failcnt`` and ``memory.max_usage_in_bytes``."""

    path: str
    """The cgroup's directory."""
    version: int
    """1 or 2."""
    oom_kills: int | None
    """Processes the kernel's OOM killer killed in it (``oom_kill``)."""
    oom_events: int | None
    """Times it ran out and the OOM killer was invoked (v2 ``oom``; v1: null)."""
    max_events: int | None
    """Times usage hit the limit (v2 ``max``; v1 ``memory.failcnt``)."""
    peak_bytes: int | None
    """Its peak usage (v2 ``memory.peak``, kernel ≥ 5.19; v1 ``memory.max_usage_in_bytes``)."""


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _int_or_none(text: str | None) -> int | None:
    if text is None or not text.strip().isdigit():
        return None
    return int(text.strip())


def read_cgroup_counters(directory: Path) -> CgroupCounters | None:
    """The OOM counters of the memory cgroup at ``directory`` (v2 if it has
    ``memory.events``, else v1 if it has ``memory.oom_control``); None if neither."""
    events = _read_text(directory / "memory.events")
    if events is not None:
        counts = parse_flat_keyed(events)
        return CgroupCounters(
            str(directory),
            2,
            counts.get("oom_kill"),
            counts.get("oom"),
            counts.get("max"),
            _int_or_none(_read_text(directory / "memory.peak")),
        )
    control = _read_text(directory / "memory.oom_control")
    if control is not None:
        return CgroupCounters(
            str(directory),
            1,
            parse_flat_keyed(control).get("oom_kill"),
            None,
            _int_or_none(_read_text(directory / "memory.failcnt")),
            _int_or_none(_read_text(directory / "memory.max_usage_in_bytes")),
        )
    return None


def memcg_directory(memcg: str, root: Path = Path("/sys/fs/cgroup")) -> Path | None:
    """The directory of the memory cgroup the kernel log names (``oom_memcg=/a/b``):
    under the v2 hierarchy if the memory controller is there, else under v1's
    ``memory`` hierarchy (a hybrid host mounts both)."""
    relative = memcg.strip().lstrip("/")
    for base in (root, root / "memory", root / "unified"):
        candidate = base / relative if relative else base
        if (candidate / "memory.events").exists() or (candidate / "memory.oom_control").exists():
            return candidate
    return None


@dataclass(frozen=True)
class KernelKill:
    """What a node's kernel log (and the cgroup it names) says of one pid."""

    killed: bool | None
    """The kernel OOM-killed it after it started; None: the kernel log cannot be read."""
    memcg: str | None = None
    """The memory cgroup that ran out (``oom_memcg``, relative to the hierarchy's root;
    ``/`` for the whole machine)."""
    anon_rss_bytes: int | None = None
    """The process's anon RSS at the kill, as the kernel logged it."""
    counters: CgroupCounters | None = None
    """That cgroup's counters, read when the kill was asked about."""


def kernel_kill(
    pid: int,
    started_since_boot_s: float | None,
    records: list[str] | None,
    cgroup_root: Path = Path("/sys/fs/cgroup"),
) -> KernelKill:
    """:func:`kernel_killed` with the kernel's evidence: the cgroup that ran out, the
    process's anon RSS at the kill, and that cgroup's OOM counters."""
    killed = kernel_killed(pid, started_since_boot_s, records)
    if not killed or records is None:
        return KernelKill(killed)
    memcg = anon = None
    for record in records:
        message = record.partition(";")[2] + " "
        found = _KMSG_MEMCG.search(message)
        if found and int(found.group(2)) == pid:
            memcg = found.group(1) or "/"
        rss = _KMSG_ANON_RSS.search(message)
        if rss and int(rss.group(1)) == pid:
            anon = int(rss.group(2)) * 1024
    directory = memcg_directory(memcg, cgroup_root) if memcg is not None else None
    counters = read_cgroup_counters(directory) if directory is not None else None
    return KernelKill(True, memcg, anon, counters)

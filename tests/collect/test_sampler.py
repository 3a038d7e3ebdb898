"""The sampler without Ray: it finds processes incrementally, keeps their status files
open, measures a known allocation and hands over a typed drain."""

from __future__ import annotations

import itertools
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from memsweep.collect import probe
from memsweep.collect.discovery import ProcessTable as _ProcessTable
from memsweep.collect.probe import read_full_pid as read_smaps_rollup
from memsweep.collect.sampler import SamplerConfig, SamplerCore, SamplerDrain

HOLD = """
import sys, numpy as np
print("ready", flush=True); sys.stdin.readline()
a = np.ones({n}, dtype=np.uint8)
print("allocated", flush=True); sys.stdin.readline()
"""
N = 200_000_000


@pytest.fixture
def holder() -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD.format(n=N)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    yield proc
    proc.kill()
    proc.wait()


def step(proc: subprocess.Popen[str], expect: str) -> None:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == expect


def rows_of(drain: SamplerDrain, pid: int) -> list[dict[str, object]]:
    return [r for r in drain.samples.to_pylist() if r["pid"] == pid]


def test_the_sampler_measures_a_known_allocation_and_drops_a_process_that_exits(
    holder: subprocess.Popen[str],
) -> None:
    # GIVEN a sampler told that the holder is the driver on its node
    config = SamplerConfig(driver_pid=holder.pid, driver_node_id="n1")
    core = SamplerCore(config, node_id="n1", is_head=True)
    try:
        core.run_round(now=1000.0)
        # WHEN the holder allocates N bytes and the sampler reads it again (no discovery)
        step(holder, "allocated")
        core.run_round(now=1000.1)
        drain = core.drain()
        # THEN the drain is typed, the rows carry the driver, and RSS grew by N within 2%
        assert isinstance(drain, SamplerDrain) and drain.node_id == "n1"
        first, second = rows_of(drain, holder.pid)
        assert first["system"] == second["system"] == "driver"
        assert second["rss_bytes"] - first["rss_bytes"] == pytest.approx(N, rel=0.02)
        # the full round (the first) has USS, PSS and CPU time; the quick one has not
        assert first["pss_bytes"] is not None and second["pss_bytes"] is None
        assert first["cpu_time_s"] is not None
        assert first["create_time"] == pytest.approx(psutil.Process(holder.pid).create_time())
        assert first["name"] == psutil.Process(holder.pid).name()
        # its own process is there too, as memsweep
        assert rows_of(drain, os.getpid())[0]["system"] == "memsweep"
        assert drain.node_samples.num_rows == 2
        assert drain.node_samples["total_bytes"][0].as_py() == psutil.virtual_memory().total
        # WHEN the holder exits
        holder.kill()
        holder.wait()
        core.run_round(now=1000.2)
        # THEN it is no longer sampled, and its status file is closed
        assert rows_of(core.drain(), holder.pid) == []
        assert holder.pid not in core._tracked
    finally:
        core.close()


@pytest.fixture
def smaps_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The pids whose ``smaps_rollup`` the sampler reads, in order (the read itself is
    the real one)."""
    reads: list[int] = []
    real_read = probe.read_full_pid

    def counted(pid: int) -> probe.FullMemory | None:
        reads.append(pid)
        return real_read(pid)

    monkeypatch.setattr(probe, "read_full_pid", counted)
    return reads


STEPS = """
import mmap, sys, tempfile, numpy as np
print("ready", flush=True); sys.stdin.readline()
a = np.ones({n}, dtype=np.uint8)
print("allocated", flush=True); sys.stdin.readline()
with tempfile.TemporaryFile() as f:
    f.write(b"x" * {m}); f.flush()
    view = mmap.mmap(f.fileno(), {m}, access=mmap.ACCESS_READ)
    touched = sum(view[i] for i in range(0, {m}, 4096))
    print("mapped", flush=True); sys.stdin.readline()
"""
M = 8_000_000


def _subtree_sampler(config: SamplerConfig) -> SamplerCore:
    """A sampler whose node "raylet" is this test process: it samples this process and
    its children."""
    return SamplerCore(config, node_id="n1", is_head=False, raylet_pid=os.getpid())


def _file_mapper(n: int) -> subprocess.Popen[str]:
    """A process (:data:`STEPS`) that has allocated ``n`` anonymous bytes and maps and
    touches an M-byte file at its next step ("mapped")."""
    proc = _steps(n)
    step(proc, "allocated")
    return proc


def _steps(n: int) -> subprocess.Popen[str]:
    """A process running :data:`STEPS` with ``n`` anonymous bytes, started and waiting
    for its first step ("allocated")."""
    proc = subprocess.Popen(
        [sys.executable, "-c", STEPS.format(n=n, m=M)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def test_uss_and_pss_follow_anonymous_pages_between_reads_and_are_read_when_sharing_may_change(
    smaps_reads: list[int],
) -> None:
    # GIVEN a process that will allocate N anonymous bytes, then map and touch an M-byte
    # file, and a sampler whose node "raylet" is this test process (so that its children
    # are sampled), counting its smaps_rollup reads
    proc = _steps(N)
    # (reads for age come 1000 s apart here: a read at a round where nothing changed would
    # be a trigger's)
    core = _subtree_sampler(SamplerConfig(pss_max_age_s=1000.0))

    def reads_after_round(now: float) -> int:
        core.run_round(now=now)
        return smaps_reads.count(proc.pid)

    other = None
    try:
        assert reads_after_round(1000.0) == 1
        # WHEN it allocates N anonymous bytes: no read; USS and PSS grow by what RssAnon
        # grew, and agree with a fresh read within 2% of N
        step(proc, "allocated")
        assert reads_after_round(1001.0) == 1
        before, after = rows_of(core.drain(), proc.pid)
        anon_grew = after["rss_anon_bytes"] - before["rss_anon_bytes"]
        assert anon_grew == pytest.approx(N, rel=0.02)
        assert after["pss_bytes"] - before["pss_bytes"] == anon_grew
        assert after["uss_bytes"] - before["uss_bytes"] == anon_grew
        fresh = read_smaps_rollup(proc.pid)  # the real read, not counted
        assert fresh is not None
        assert after["pss_bytes"] == pytest.approx(fresh.pss_bytes, abs=0.02 * N)
        assert after["uss_bytes"] == pytest.approx(fresh.uss_bytes, abs=0.02 * N)
        # WHEN it maps and touches a file (pages others may share): read again
        step(proc, "mapped")
        assert reads_after_round(1002.0) == 2
        assert reads_after_round(1003.0) == 2
        # WHEN another sampled process starts (shared pages change sharers): read again
        other = subprocess.Popen(
            [sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(60)"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert other.stdout is not None and other.stdout.readline().strip() == "ready"
        assert reads_after_round(1004.0) == 3
        assert reads_after_round(1005.0) == 3
        # WHEN the last read is pss_max_age_s old: read again
        assert reads_after_round(2004.0) == 4
    finally:
        for child in (proc, other):
            if child is not None:
                child.kill()
                child.wait()
        core.close()


@pytest.fixture
def ten_idle() -> Iterator[tuple[SamplerCore, set[int]]]:
    """Ten idle child processes (``sleep``) and a sampler of this process's subtree that
    reads a process's smaps_rollup at least every 10 s, full rounds 1 s apart, without a
    CPU budget: the pytest process is sampled too, and after a test in it imported RLlib
    its own read costs more than the default budget holds, which then puts the sleepers'
    reads off (the budget's own tests are below)."""
    sleepers = [subprocess.Popen(["sleep", "120"]) for _ in range(10)]
    core = _subtree_sampler(
        SamplerConfig(full_interval_s=1.0, pss_max_age_s=10.0, pss_cpu_share=math.inf)
    )
    yield core, {p.pid for p in sleepers}
    for sleeper in sleepers:
        sleeper.kill()
        sleeper.wait()
    core.close()


def test_reads_for_age_are_spread_over_full_rounds_and_none_is_older_than_the_max_age(
    smaps_reads: list[int], ten_idle: tuple[SamplerCore, set[int]]
) -> None:
    # GIVEN ten idle processes, all read at the first full round, and a sampler that reads
    # a process's smaps_rollup at least every 10 s, full rounds 1 s apart
    core, mine = ten_idle
    reads: dict[float, list[int]] = {}
    for second in range(41):
        before = len(smaps_reads)
        core.run_round(now=1000.0 + second)
        reads[1000.0 + second] = [p for p in smaps_reads[before:] if p in mine]
    # THEN the first round reads each once; afterwards no round reads more than the
    # share that keeps up (10 processes / 10 s: one a round, two where a fraction
    # carried over), where reading each when it came of age would read all ten at
    # once at 1010, 1020, 1030 and 1040
    assert sorted(reads[1000.0]) == sorted(mine)
    assert max(len(pids) for at, pids in reads.items() if at > 1000.0) <= 2, reads
    # AND each is read again within 10 s of its last read, about once every 10 s
    for pid in mine:
        times = [at for at, pids in reads.items() if pid in pids]
        assert max(b - a for a, b in itertools.pairwise(times)) <= 10.0, times
        assert 4 <= len(times) - 1 <= 5, times


def _read_cost_s(pids: set[int]) -> float:
    """The median CPU seconds of one ``smaps_rollup`` read of these processes, now."""
    costs = []
    for pid in sorted(pids) * 5:
        cpu = time.thread_time()
        read_smaps_rollup(pid)
        costs.append(time.thread_time() - cpu)
    return sorted(costs)[len(costs) // 2]


def test_smaps_rollup_reads_stay_within_their_cpu_share_and_still_reach_every_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a small stand-in raylet with ten idle children, each process wanted for a
    # read at every full round (max age 0), and a budget that affords about a quarter
    raylet = subprocess.Popen(
        ["sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 120 & done; wait"]
    )
    deadline = time.monotonic() + 10
    while len(psutil.Process(raylet.pid).children()) < 10:
        assert time.monotonic() < deadline, "the stand-in raylet did not start its children"
        time.sleep(0.01)
    mine = {raylet.pid, *(child.pid for child in psutil.Process(raylet.pid).children())}
    # (the sampler also samples its own process, this test's: a read ~40x larger)
    # A budget that reads all twelve about every 4 s (720 reads in a minute without one)
    share = (len(mine) * _read_cost_s(mine) + _read_cost_s({os.getpid()})) / 4
    spent: list[tuple[int, float]] = []
    real_read = probe.read_full_pid

    def costed(pid: int) -> probe.FullMemory | None:
        cpu = time.thread_time()
        try:
            return real_read(pid)
        finally:
            spent.append((pid, time.thread_time() - cpu))

    monkeypatch.setattr(probe, "read_full_pid", costed)
    config = SamplerConfig(full_interval_s=1.0, pss_max_age_s=0.0, pss_cpu_share=share)
    core = SamplerCore(config, node_id="n1", is_head=False, raylet_pid=raylet.pid)
    try:
        core.run_round(now=1000.0)
        assert {pid for pid, _ in spent} == {*mine, os.getpid()}  # every first read
        first = len(spent)
        reads: dict[int, list[float]] = {pid: [] for pid in {*mine, os.getpid()}}
        for second in range(1, 61):
            before = len(spent)
            core.run_round(now=1000.0 + second)
            for pid, _ in spent[before:]:
                reads[pid].append(1000.0 + second)
        # THEN the reads after the first ones cost at most the share of the 60 s, plus
        # what the budget holds and one read over it
        later = [cost for _, cost in spent[first:]]
        capacity = share * max(config.pss_max_age_s, config.full_interval_s)
        assert sum(later) <= share * 60 + capacity + max(later), (sum(later), share)
        # AND far fewer reads than one per process per round (720), yet every process is
        # read again and again, oldest first: about every 4 s (less often as the
        # sampler's own process, this one, grows and its read costs more)
        assert len(later) < 360, len(later)
        for pid in mine:
            times = reads[pid]
            assert len(times) >= 4, (pid, times)
            assert max(b - a for a, b in itertools.pairwise([1000.0, *times])) <= 20.0, times
    finally:
        for child in psutil.Process(raylet.pid).children():
            child.kill()
        raylet.kill()
        raylet.wait()
        core.close()


def test_a_process_whose_pages_moved_is_read_first_and_a_read_put_off_carries_them(
    smaps_reads: list[int],
) -> None:
    # GIVEN a process holding N anonymous bytes that will map and touch an M-byte file (a
    # move well under a tenth of its size: its read is up to the budget), ten idle ones,
    # and a budget of about one read a round when all are due for age at every round
    proc = _file_mapper(N)
    sleepers = [subprocess.Popen(["sleep", "120"]) for _ in range(10)]
    idle = {p.pid for p in sleepers}
    share = 1.5 * _read_cost_s({proc.pid, *idle})
    core = _subtree_sampler(
        SamplerConfig(full_interval_s=1.0, pss_max_age_s=1.0, pss_cpu_share=share)
    )
    try:
        core.run_round(now=1000.0)
        for second in range(1, 20):
            core.run_round(now=1000.0 + second)
        core.drain()
        # WHEN it maps and touches the file, and the budget has refilled (long after: this
        # test's own process, sampled too, costs dozens of reads of the others)
        step(proc, "mapped")
        before = len(smaps_reads)
        core.run_round(now=3000.0)
        # THEN it is the one read first, though every idle process was read before it
        # and all are due for age
        assert smaps_reads[before] == proc.pid, smaps_reads[before:]
    finally:
        for child in (proc, *sleepers):
            child.kill()
            child.wait()
        core.close()


def test_a_read_the_budget_puts_off_carries_the_moved_pages_closer_than_ignoring_them(
    smaps_reads: list[int],
) -> None:
    # GIVEN a process holding N anonymous bytes that will map and touch an M-byte file
    # only it maps (under a tenth of its size: its read is up to the budget), and a sampler
    # with a budget of almost nothing, spent on the one read for age it afforded (first
    # reads are not charged; which of the two it read depends on their pids)
    proc = _file_mapper(N)
    core = _subtree_sampler(SamplerConfig(pss_max_age_s=1.0, pss_cpu_share=1e-9))
    try:
        core.run_round(now=1000.0)
        first = len(smaps_reads)
        core.run_round(now=1001.0)
        assert len(smaps_reads) == first + 1
        reads = smaps_reads.count(proc.pid)
        # WHEN it maps and touches the file
        step(proc, "mapped")
        core.run_round(now=1002.0)
        # THEN its smaps_rollup is not read again
        assert smaps_reads.count(proc.pid) == reads
        _, before, after = rows_of(core.drain(), proc.pid)
        moved = after["rss_file_bytes"] - before["rss_file_bytes"]
        anon = after["rss_anon_bytes"] - before["rss_anon_bytes"]
        assert moved == pytest.approx(M, rel=0.05)
        # AND its USS follows only its anonymous pages, while its PSS takes the moved
        # pages at the share its shared pages had: nearer the true PSS than the last
        # figure plus the anonymous change alone
        assert after["uss_bytes"] - before["uss_bytes"] == anon
        fresh = read_smaps_rollup(proc.pid)
        assert fresh is not None
        ignoring = before["pss_bytes"] + anon
        assert 0 < after["pss_bytes"] - ignoring <= moved
        assert abs(fresh.pss_bytes - after["pss_bytes"]) < abs(fresh.pss_bytes - ignoring)
    finally:
        proc.kill()
        proc.wait()
        core.close()


def test_a_process_whose_pages_moved_by_a_tenth_of_its_size_has_everyone_read_past_the_budget(
    smaps_reads: list[int],
) -> None:
    # GIVEN a small process (no large allocation) that will map and touch an M-byte file,
    # more than a tenth of its size, and a sampler with a budget of almost nothing
    proc = _file_mapper(1)
    core = _subtree_sampler(SamplerConfig(pss_max_age_s=1000.0, pss_cpu_share=1e-9))
    try:
        core.run_round(now=1000.0)
        core.run_round(now=1001.0)
        assert (smaps_reads.count(proc.pid), smaps_reads.count(os.getpid())) == (1, 1)
        # WHEN it maps and touches the file (as a fresh Ray worker importing PyTorch does)
        step(proc, "mapped")
        core.run_round(now=1002.0)
        # THEN it is read again, and so is every other process holding file pages (this
        # test's, which the sampler samples too): their share of shared pages may have moved
        assert (smaps_reads.count(proc.pid), smaps_reads.count(os.getpid())) == (2, 2)
        _, _, after = rows_of(core.drain(), proc.pid)
        fresh = read_smaps_rollup(proc.pid)
        assert fresh is not None
        assert after["pss_bytes"] == pytest.approx(fresh.pss_bytes, abs=0.02 * M)
    finally:
        proc.kill()
        proc.wait()
        core.close()


def test_a_zombie_child_is_not_sampled_and_does_not_make_every_round_read_every_process(
    smaps_reads: list[int], ten_idle: tuple[SamplerCore, set[int]]
) -> None:
    # GIVEN ten idle processes and a sampler that has read them all once
    core, mine = ten_idle
    zombie = None
    try:
        core.run_round(now=1000.0)
        # WHEN a child exits and nobody waits for it (a zombie: listed in /proc, no memory)
        zombie = subprocess.Popen(["true"])
        deadline = time.monotonic() + 10
        while psutil.Process(zombie.pid).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, "the child did not exit"
            time.sleep(0.01)
        reads: list[int] = []
        for second in range(1, 16):
            before = len(smaps_reads)
            core.run_round(now=1000.0 + second)
            reads.append(sum(1 for p in smaps_reads[before:] if p in mine))
        # THEN it is in no sample, and after the rounds that saw the process set change,
        # the idle processes are read only for their age: each at most twice in 13 s
        # (the budget may make the reads that came due while it paid for those rounds
        # together), where a zombie found anew at every full round had them all read at
        # every one (10, 10, 10, ...: 130)
        assert zombie.pid not in {row["pid"] for row in core.drain().samples.to_pylist()}
        assert sum(reads[2:]) <= 2 * len(mine), reads
    finally:
        if zombie is not None:
            zombie.wait()


SHARE = """
import mmap, sys
path, size = sys.argv[1], int(sys.argv[2])
if sys.argv[3] == "create":
    with open(path, "w+b") as f:
        f.truncate(size)
print("ready", flush=True); sys.stdin.readline()
with open(path, "r+b") as f:
    view = mmap.mmap(f.fileno(), size)
    for i in range(0, size, 4096):
        view[i] = 1
    print("touched", flush=True); sys.stdin.readline()
"""


def test_when_another_process_maps_shared_pages_every_holder_of_shmem_is_read_again(
    smaps_reads: list[int],
) -> None:
    # GIVEN an owner that maps and touches M bytes of shared memory (/dev/shm, as Ray's
    # object store), and a second process that is already running and will map them too
    shm = Path("/dev/shm") / f"memsweep-test-{os.getpid()}"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SHARE, str(shm), str(M), role],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for role in ("create", "attach")
    ]
    owner, sharer = procs
    core = _subtree_sampler(SamplerConfig())
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        step(owner, "touched")
        core.run_round(now=1000.0)
        core.run_round(now=1001.0)
        assert smaps_reads.count(owner.pid) == 1
        # WHEN the second process maps and touches the same pages
        step(sharer, "touched")
        core.run_round(now=1002.0)
        # THEN the owner, whose own pages did not move, is read again, and its PSS lost
        # about half the shared pages to the sharer
        assert smaps_reads.count(owner.pid) == 2
        pss = [r["pss_bytes"] for r in rows_of(core.drain(), owner.pid)]
        assert pss[1] - pss[2] == pytest.approx(M / 2, rel=0.1)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        shm.unlink(missing_ok=True)
        core.close()


def test_rounds_nobody_drains_are_dropped_oldest_first_and_counted() -> None:
    # GIVEN a sampler that keeps at most 3 undrained rounds
    core = SamplerCore(SamplerConfig(max_buffered_rounds=3), node_id="n1", is_head=False)
    try:
        # WHEN 5 rounds run (the first full) and nobody drains
        for index in range(5):
            core.run_round(now=1000.0 + index / 10)
        drain = core.drain()
        # THEN the last 3 rounds are kept, whole, and the 2 dropped are counted
        times = drain.samples["ts"].cast("int64").to_pylist()
        assert sorted(set(times)) == [int((1000.0 + i / 10) * 1e6) for i in (2, 3, 4)]
        assert drain.node_samples.num_rows == 3 and drain.dropped_rounds == 2
        own = [r for r in drain.samples.to_pylist() if r["pid"] == os.getpid()]
        assert len(own) == 3 and all(r["pss_bytes"] is None for r in own)
        assert all(r["cpu_time_s"] is None and r["rss_bytes"] > 0 for r in own)
    finally:
        core.close()


def test_the_process_table_reads_only_new_pids() -> None:
    table = _ProcessTable()
    first = table.refresh()
    assert os.getpid() in first and table.parent[os.getpid()] == os.getppid()
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        new = table.refresh()
        assert proc.pid in new
        assert os.getpid() not in new
        assert table.parent[proc.pid] == os.getpid()
    finally:
        proc.kill()
        proc.wait()
    table.refresh()
    assert proc.pid not in table.parent


def test_a_status_file_kept_open_reads_what_a_fresh_open_reads() -> None:
    status = probe.StatusFile(os.getpid())
    try:
        kept, fresh = status.read(), probe.read_status(os.getpid())
        assert kept is not None and fresh is not None
        assert kept.ppid == fresh.ppid == os.getppid()
        assert kept.rss_bytes == pytest.approx(fresh.rss_bytes, rel=0.05)
        assert kept.hwm_bytes >= kept.rss_bytes
    finally:
        status.close()


def test_the_one_split_parse_of_a_real_status_file_reads_what_a_field_by_field_one_reads() -> None:
    real = open(f"/proc/{os.getpid()}/status", "rb").read()  # noqa: PTH123, SIM115
    assert b"\nHugetlbPages:" in real  # the layout the one-split parse is for
    # Without the line that ends the block the parse falls back to field by field.
    fallback = real.replace(b"\nHugetlbPages:", b"\nHugetlb_Pages:")
    fields = probe.parse_status_fields(real)
    assert fields is not None and fields == probe.parse_status_fields(fallback)
    assert fields[0] > 0 and fields[1] >= fields[0]


def test_fields_are_parsed_from_the_kernels_text() -> None:
    status = (
        b"Name:\tpython\nPPid:\t42\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n"
        b"RssAnon:\t   512 kB\nRssFile:\t   256 kB\nRssShmem:\t   256 kB\nVmSwap:\t      8 kB\n"
    )
    parsed = probe.parse_status(status)
    assert parsed == probe.StatusMemory(
        rss_bytes=1024 * 1024,
        hwm_bytes=2048 * 1024,
        swap_bytes=8 * 1024,
        rss_anon_bytes=512 * 1024,
        rss_file_bytes=256 * 1024,
        rss_shmem_bytes=256 * 1024,
        ppid=42,
    )
    stat = probe.parse_stat(
        b"7 (ray::My (odd) Actor) S 1 7 7 0 -1 0 0 0 0 0 300 100 0 0 20 0 1 0 555 0"
    )
    assert (stat.ppid, stat.name, stat.start_ticks) == (1, "ray::My (odd) Actor", 555)
    assert stat.cpu_time_s == pytest.approx(400 / os.sysconf("SC_CLK_TCK"))
    rollup = b"x [rollup]\nRss: 10 kB\nPss:  6 kB\nPrivate_Clean: 1 kB\nPrivate_Dirty: 2 kB\n"
    assert probe.parse_smaps_rollup(rollup) == probe.FullMemory(
        uss_bytes=3 * 1024, pss_bytes=6 * 1024
    )


@pytest.mark.slow
def test_a_trial_registers_with_the_sampler_that_replaced_the_one_it_found(
    local_ray: object,
) -> None:
    # On a loaded machine the collector replaces a sampler that missed its drain deadline;
    # a trial registering at that moment found the old one, whose death failed the trial.
    import time

    import ray

    from memsweep.collect.sampler import SAMPLER_NAME_PREFIX, register_trial

    @ray.remote(num_cpus=0)
    class Registry:
        """Stands in for a node's sampler: the one method a trial calls, recorded."""

        def __init__(self, delay_s: float) -> None:
            self.delay_s = delay_s
            self.calls: list[tuple[str, int]] = []
            self.waiting = 0

        def register(self, trial_id: str, pg: str | None, pid: int) -> None:
            self.waiting += 1
            time.sleep(self.delay_s)
            self.calls.append((trial_id, pid))

        def callers_waiting(self) -> int:
            return self.waiting

        def registered(self) -> list[tuple[str, int]]:
            return self.calls

    @ray.remote(num_cpus=0)
    def trial() -> tuple[bool, int]:
        return register_trial("t1"), os.getpid()

    name = f"{SAMPLER_NAME_PREFIX}{ray.get_runtime_context().get_node_id()}"
    # GIVEN a sampler that is slow to answer, killed while the trial waits on it
    old = Registry.options(name=name, max_concurrency=2).remote(60.0)  # type: ignore[attr-defined]
    ray.get(old.registered.remote())
    pending = trial.remote()
    while not ray.get(old.callers_waiting.remote()):
        time.sleep(0.2)
    ray.kill(old)
    # AND its replacement under the same name
    time.sleep(0.5)
    new = Registry.options(name=name).remote(0.0)  # type: ignore[attr-defined]
    # THEN the trial registered with the replacement instead of failing
    registered, pid = ray.get(pending, timeout=60)
    assert registered
    assert ray.get(new.registered.remote()) == [("t1", pid)]
    ray.kill(new)

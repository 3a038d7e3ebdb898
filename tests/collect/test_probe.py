"""Reading one process's memory: a known allocation is measured to within 2%."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from memsweep.collect import probe

ALLOCATE = """
import sys, time, numpy as np
print("ready", flush=True); sys.stdin.readline()
a = np.ones({n}, dtype=np.uint8)           # allocated and touched
print("allocated", flush=True); sys.stdin.readline()
spike = np.ones({m}, dtype=np.uint8); del spike   # a spike far shorter than any sampling period
print("spiked", flush=True); sys.stdin.readline()
"""


def _step(proc: subprocess.Popen[str], expect: str) -> None:
    assert proc.stdout is not None and proc.stdin is not None
    line = proc.stdout.readline().strip()
    assert line == expect


@pytest.fixture
def allocating_process() -> subprocess.Popen[str]:
    n, m = 300_000_000, 200_000_000
    proc = subprocess.Popen(
        [sys.executable, "-c", ALLOCATE.format(n=n, m=m)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    proc.n, proc.m = n, m  # type: ignore[attr-defined]
    yield proc
    proc.kill()
    proc.wait()


def test_a_known_allocation_and_a_short_spike_are_measured_within_2_percent(
    allocating_process: subprocess.Popen[str],
) -> None:
    proc = allocating_process
    assert proc.stdin is not None
    n, m = proc.n, proc.m  # type: ignore[attr-defined]
    # GIVEN a process at rest
    _step(proc, "ready")
    before = probe.read_status(proc.pid)
    assert before is not None
    # WHEN it allocates and touches n bytes
    proc.stdin.write("\n")
    proc.stdin.flush()
    _step(proc, "allocated")
    after = probe.read_status(proc.pid)
    assert after is not None
    # THEN its resident size grew by n, within 2%
    assert after.rss_bytes - before.rss_bytes == pytest.approx(n, rel=0.02)
    assert after.rss_anon_bytes - before.rss_anon_bytes == pytest.approx(n, rel=0.02)
    # WHEN it allocates m more and frees them at once
    proc.stdin.write("\n")
    proc.stdin.flush()
    _step(proc, "spiked")
    spiked = probe.read_status(proc.pid)
    assert spiked is not None
    # THEN RSS is back, but the high-water mark kept the spike
    assert spiked.rss_bytes == pytest.approx(after.rss_bytes, rel=0.02)
    assert spiked.hwm_bytes - after.rss_bytes == pytest.approx(m, rel=0.02)
    # AND USS/PSS see the private allocation too
    full = probe.read_full_pid(proc.pid)
    assert full is not None
    assert full.uss_bytes >= n
    assert full.pss_bytes >= full.uss_bytes


def test_a_process_that_is_gone_reads_as_none() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    time.sleep(0.05)
    assert probe.read_status(proc.pid) is None


def test_node_memory_is_consistent() -> None:
    node = probe.read_node()
    assert 0 < node.available_bytes <= node.total_bytes
    assert node.used_bytes == node.total_bytes - node.available_bytes
    if node.cgroup_limit_bytes is not None:
        assert node.cgroup_limit_bytes > 0


def test_gpu_figures_are_none_without_nvml_and_numbers_with_it() -> None:
    gpu = probe.GpuProbe()
    try:
        if gpu.available:
            assert isinstance(gpu.total_used(), int)
        else:
            # "No GPU" must not read as "no GPU memory used".
            assert gpu.per_pid() == {}
            assert gpu.total_used() is None
    finally:
        gpu.close()

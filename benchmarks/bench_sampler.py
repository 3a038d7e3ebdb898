"""What the sampler itself costs, and how that scales with the processes it reads.

:class:`memsweep.collect.sampler.SamplerCore` (the sampling logic without Ray) runs in a fresh
process of its own, on ``N`` real idle processes: a stand-in for a raylet (a Python
process) with ``N`` sleeping Python children. The core is told that stand-in is its
node's raylet, so discovery walks the real process table exactly as on a Ray node.
Timed separately, as process CPU time:

- *fast* rounds: ``/proc/PID/status`` of every process (what runs at ``interval_s``);
- *full* rounds: discovery, status, USS/PSS via ``smaps_rollup`` and CPU times (what runs
  every ``full_interval_s`` for a process whose file or shmem pages moved since its last
  read, or when a process started or ended on the node);
- *carried* full rounds: the same with USS/PSS followed from the status fields instead
  (what a process costs between two ``smaps_rollup`` reads, ``pss_max_age_s`` apart,
  when it is idle or only its anonymous pages move, as a training process's do);

each including a drain (Arrow conversion) every 20 rounds, as the collector does every
2 s at 10 Hz. The default mix (10 Hz, full rounds at 1 Hz) is 9 fast rounds and 1 full
one a second: a carried one, with a ``smaps_rollup`` read every ``pss_max_age_s``; or,
for processes whose file or shmem pages all move every second, a full one.
The children are small Python processes: a Ray worker with torch loaded has many more
mappings, so its ``smaps_rollup`` read costs more; the real-node figures in the
overhead section show that cost.

Run alone: ``python benchmarks/bench_sampler.py 10 50 200``.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchlib import Profile, Row, Stat, Timer, log
from memsweep.collect.sampler import SamplerConfig

_FAKE_RAYLET = r"""
import subprocess, sys
n = int(sys.argv[1])
# Each child waits for EOF on its stdin: it ends when this process ends, however it ends.
kids = [subprocess.Popen([sys.executable, "-S", "-c", "import sys; sys.stdin.read()"],
                         stdin=subprocess.PIPE) for _ in range(n)]
print("ready", flush=True)
sys.stdin.read()
for kid in kids:
    kid.stdin.close()
for kid in kids:
    kid.wait()
"""

_BATCHES = 3
KINDS = (
    ("fast", math.inf, 0.0),
    ("full", 0.0, 0.0),
    ("carried", 0.0, math.inf),
)
"""(kind, full_interval_s, pss_max_age_s) of the three round kinds timed, with no
``smaps_rollup`` budget: status only; full with a ``smaps_rollup`` read of every process;
full with every process's USS/PSS followed from its status fields (between two reads)."""
PSS_MAX_AGE_S = SamplerConfig.pss_max_age_s
PSS_CPU_SHARE = SamplerConfig.pss_cpu_share
_BUDGETED_SECONDS = 30
"""Simulated seconds per batch of the budgeted kind: 10 Hz rounds, full ones at 1 Hz,
every process wanted for a ``smaps_rollup`` read at every full round (as when its own
file or shmem pages move a little every second), the default ``pss_cpu_share`` deciding
which are made. (Reads a change of sharers calls for are made whatever the budget: what
they cost when every process's are called for every second is the unbudgeted figure.)"""
_DRAIN_EVERY = 20


def _status_bytes(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) * 1024
    return 0


def _read_floor(parent: int, rounds: int) -> list[float]:
    """The floor: CPU µs to re-read one process's ``/proc/PID/status`` (kept open, read
    with ``os.pread``, nothing parsed) for the stand-in raylet and its children."""
    import os

    import psutil

    pids = [parent, *(child.pid for child in psutil.Process(parent).children())]
    fds = [os.open(f"/proc/{pid}/status", os.O_RDONLY) for pid in pids]
    try:
        per_batch = []
        for _ in range(_BATCHES):
            cpu = time.process_time()
            for _ in range(rounds):
                for fd in fds:
                    os.pread(fd, 16384, 0)
            per_batch.append((time.process_time() - cpu) / (rounds * len(fds)) * 1e6)
        return per_batch
    finally:
        for fd in fds:
            os.close(fd)


def measure(n: int, rounds: int) -> dict[str, Any]:
    """In this process: CPU µs per process per round, fast and full, on ``n`` children."""
    from memsweep.collect.sampler import SamplerCore

    raylet = subprocess.Popen(
        [sys.executable, "-c", _FAKE_RAYLET, str(n)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert raylet.stdout is not None
        if raylet.stdout.readline().strip() != "ready":
            raise RuntimeError("the stand-in raylet did not start its children")

        out: dict[str, Any] = {"n": n, "floor_us": _read_floor(raylet.pid, rounds)}
        out.update(_budgeted(raylet.pid, n))
        for kind, full_interval_s, pss_max_age_s in KINDS:
            config = SamplerConfig(
                full_interval_s=full_interval_s,
                pss_max_age_s=pss_max_age_s,
                pss_cpu_share=math.inf,
            )
            core = SamplerCore(config, "bench", is_head=False, raylet_pid=raylet.pid)
            sampled = core.run_round()  # The first round always discovers.
            if sampled < n:
                raise RuntimeError(
                    f"the sampler found {sampled} processes under the stand-in raylet, not {n}"
                )
            core.drain()
            per_batch = []
            for _ in range(_BATCHES):
                count = 0
                cpu = time.process_time()
                for index in range(rounds):
                    count += core.run_round()
                    if (index + 1) % _DRAIN_EVERY == 0:
                        core.drain()
                core.drain()
                cpu = time.process_time() - cpu
                per_batch.append(cpu / max(count, 1) * 1e6)
            core.close()
            out[f"{kind}_us"] = per_batch
            out["sampled"] = sampled
        out["rss_bytes"] = _status_bytes("VmRSS:")
        out["hwm_bytes"] = _status_bytes("VmHWM:")
        return out
    finally:
        if raylet.stdin is not None:
            raylet.stdin.close()
        raylet.wait(timeout=120)


def _budgeted(raylet_pid: int, n: int) -> dict[str, Any]:
    """The default sampler (10 Hz, full rounds at 1 Hz, the default ``pss_cpu_share``) on
    a simulated clock, every process wanted for a read at every full round: CPU µs per
    process per sample, and ``smaps_rollup`` reads per process per simulated second."""
    from memsweep.collect import probe
    from memsweep.collect.sampler import SamplerCore

    reads = [0]
    real_read = probe.read_full_pid

    def counted(pid: int) -> probe.FullMemory | None:
        reads[0] += 1
        return real_read(pid)

    probe.read_full_pid = counted  # type: ignore[assignment]
    try:
        config = SamplerConfig(full_interval_s=1.0, pss_max_age_s=0.0)
        core = SamplerCore(config, "bench", is_head=False, raylet_pid=raylet_pid)
        now = 1000.0
        sampled = core.run_round(now=now)  # The first round reads each process once.
        core.drain()
        per_batch, reads_per_s = [], []
        for _ in range(_BATCHES):
            count, reads[0] = 0, 0
            cpu = time.process_time()
            for index in range(_BUDGETED_SECONDS * 10):
                now += 0.1
                count += core.run_round(now=now)
                if (index + 1) % _DRAIN_EVERY == 0:
                    core.drain()
            core.drain()
            per_batch.append((time.process_time() - cpu) / max(count, 1) * 1e6)
            reads_per_s.append(reads[0] / sampled / _BUDGETED_SECONDS)
        core.close()
    finally:
        probe.read_full_pid = real_read  # type: ignore[assignment]
    return {"budgeted_us": per_batch, "budgeted_reads_per_s": reads_per_s}


def _in_child(n: int, rounds: int) -> dict[str, Any]:
    """:func:`measure` in a fresh interpreter, so that its RSS is the sampler's alone."""
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(n), str(rounds)],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    if done.returncode != 0:
        raise RuntimeError(f"sampler cost at {n} processes failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def run(profile: Profile) -> tuple[list[Row], dict[str, Any]]:
    timer = Timer()
    measured = []
    for n in profile.sampler_process_counts:
        log(f"sampler: SamplerCore on {n} idle processes, {profile.sampler_rounds} rounds × 3")
        measured.append(_in_child(n, profile.sampler_rounds))
    rows: list[Row] = []
    blended: dict[int, float] = {}
    for figures in measured:
        n = figures["n"]
        fast = Stat.of(figures["fast_us"])
        full = Stat.of(figures["full_us"])
        floor = Stat.of(figures["floor_us"])
        assert fast is not None and full is not None and floor is not None
        ratio = fast.median / floor.median
        rows.append(
            Row(
                key=f"sampler.floor_ratio.n{n}",
                section="sampler",
                figure=f"fast-round cost per process over the /proc/PID/status read floor, {n} processes",
                tool="memsweep 10 Hz",
                unit="x",
                stat=Stat.one(ratio),
                goal="≤ 2× the floor",
                status="met" if ratio <= 2 else "MISSED",
                note=(
                    f"{fast.median:.1f} µs per process vs the floor {floor.median:.1f} µs "
                    "(pread of an open status file, same run)"
                ),
            )
        )
        # Per second at 10 Hz with full rounds at 1 Hz: 9 fast rounds and 1 full one. A
        # process's smaps_rollup is read once per pss_max_age_s, or at every full round
        # when its file or shmem pages move every second.
        idle_share = 1.0 / PSS_MAX_AGE_S
        mixes = {
            "idle": Stat.of(
                (9 * a + c + idle_share * (b - c)) / 10
                for a, b, c in zip(
                    figures["fast_us"], figures["full_us"], figures["carried_us"], strict=True
                )
            ),
            "moving": Stat.of(figures["budgeted_us"]),
        }
        unbudgeted = Stat.of(
            (9 * a + b) / 10 for a, b in zip(figures["fast_us"], figures["full_us"], strict=True)
        )
        assert unbudgeted is not None
        read_every_s = 1 / max(statistics.median(figures["budgeted_reads_per_s"]), 1e-9)
        carried = Stat.of(figures["carried_us"])
        assert carried is not None
        for mix, mixed in mixes.items():
            assert mixed is not None
            if mix == "idle":
                blended[n] = mixed.median
            # CPU share of one core at 10 Hz: 10 rounds a second over `sampled` processes.
            cpu_percent = mixed.median * 1e-6 * figures["sampled"] * 10 * 100
            which = (
                f"{n} processes, smaps_rollup every {PSS_MAX_AGE_S:.0f} s (idle, or "
                "only anonymous pages moving)"
                if mix == "idle"
                else f"{n} processes, a smaps_rollup read wanted at every full round (own "
                f"file or shmem pages moving a little every second), {PSS_CPU_SHARE * 100:.2g}% "
                "of a core for them"
            )
            extra = (
                ""
                if mix == "idle"
                else (
                    f"; measured on a simulated 10 Hz clock ({_BUDGETED_SECONDS} s × "
                    f"{_BATCHES}): each process's smaps_rollup read every {read_every_s:.1f} s "
                    "on average, its USS/PSS carried in between; reading every one at "
                    "every full round (no budget, as when every process's sharers change "
                    f"every second): {unbudgeted.median:.0f} µs, "
                    f"{unbudgeted.median * 1e-6 * figures['sampled'] * 10 * 100:.2f}% of a core"
                )
            )
            rows.append(
                Row(
                    key=f"sampler.cost.n{n}" if mix == "idle" else f"sampler.cost_moving.n{n}",
                    section="sampler",
                    figure=f"SamplerCore CPU per process per sample, {which}",
                    tool="memsweep 10 Hz (+USS/PSS 1 Hz)",
                    unit="us",
                    stat=mixed,
                    goal="≤ 1% of a core at 10 Hz" if n == 50 else "",
                    status=("met" if cpu_percent <= 1 else "MISSED") if n == 50 else "info",
                    note=(
                        f"fast round {fast.median:.0f} µs, full round {full.median:.0f} µs "
                        f"with smaps_rollup and {carried.median:.0f} µs without, per "
                        f"process: {cpu_percent:.2f}% of a core at 10 Hz with full rounds "
                        f"at 1 Hz, {fast.median * 1e-6 * figures['sampled'] * 10 * 100:.2f}% "
                        f"for the 10 Hz status reads alone{extra}"
                    ),
                )
            )
        rows.append(
            Row(
                key=f"sampler.rss.n{n}",
                section="sampler",
                figure=f"SamplerCore process RSS, {n} idle processes (no Ray runtime)",
                tool="memsweep",
                unit="bytes",
                stat=Stat.one(figures["rss_bytes"]),
                note=f"peak {figures['hwm_bytes'] / 1e6:.0f} MB",
            )
        )
    low, high = min(blended), max(blended)
    scaling = blended[high] / blended[low]
    # Round cost = fixed part (node memory, cgroup, discovery of the whole process table)
    # + a part per process: a least-squares line through (processes, µs per round).
    fits = {}
    for kind in ("fast", "full", "carried"):
        xs = [float(m["sampled"]) for m in measured]
        ys = [statistics.median(m[f"{kind}_us"]) * m["sampled"] for m in measured]
        if len(set(xs)) > 1:
            fits[kind] = statistics.linear_regression(xs, ys)
    rows.append(
        Row(
            key="sampler.scaling",
            section="sampler",
            figure=f"CPU per process per sample at {high} vs {low} processes",
            tool="memsweep",
            unit="x",
            stat=Stat.one(scaling),
            note="1.0× = total cost linear in the number of processes; per round: "
            + ", ".join(
                f"{kind} {fit.intercept:.0f} µs + {fit.slope:.0f} µs/process"
                for kind, fit in fits.items()
            ),
        )
    )
    lines = {k: {"fixed_us": f.intercept, "per_process_us": f.slope} for k, f in fits.items()}
    return rows, {"measured": measured, "round_cost": lines, **timer.done()}


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        print(json.dumps(measure(int(argv[1]), int(argv[2]))))
        return 0
    from benchlib import DEFAULT, Profile, render_text

    counts = tuple(int(a) for a in argv) or DEFAULT.sampler_process_counts
    profile = Profile(**{**DEFAULT.__dict__, "sampler_process_counts": counts})
    rows, _ = run(profile)
    print(render_text(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Driver: the peak RSS of ``memsweep run``'s own process during the default sweep.

The driver runs Tune's loop and memsweep's collector on the node it measures, so its
memory is part of what a user sees. Goal (issue #16): ≤ 300 MB. The figure is the largest
RSS of the samples of role ``driver`` (the sampler reads the driver like any other
process; :func:`memsweep.report.summary.driver_peak_rss`), from a real ``memsweep run``
subprocess of ``sweeps/default.yaml``: every trial of it (torch and tf2 ones, 0 and 2 env
runners) with the sweep's own stop rule in the default and full profiles (the driver
grows slowly while trials report, ~2 MB a minute), only the base point for 2 iterations
in the smoke profile. Its RSS has two parts, both reported: anonymous memory (its own)
and pages of mapped library files, shared with Ray's processes, of which more are
resident when the page cache holds whole libraries, as right after a fresh install
(155 MB of them in a fresh clone's ``make sweep``, 111 MB in a long-used virtualenv).

Two more figures come from the same run. The floor: a Python process that only imports
``ray.tune`` and starts Ray as ``memsweep run`` does (``ray.init`` with the dashboard),
measured in a subprocess right after the sweep, the part of the driver's RSS that any
Tune driver on this node pays. And the NodeSampler actor's CPU over the whole sweep (its
own ``cpu_time_s`` over wall time): the overhead section's runs last seconds and are
mostly start-up; this one is as long as a user's sweep.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from bench_overhead import sampler_actor_figures
from benchlib import REPO, Profile, Row, Stat, Timer, log, memsweep_run
from memsweep.report.summary import DRIVER_GOAL_BYTES, driver_peak_rss
from memsweep.store import open_results

ITERATIONS = {"smoke": 2}
"""Iterations per trial by profile (the others keep the sweep's own stop rule)."""


def _sweep_file(profile: Profile, work: Path) -> Path:
    data: dict[str, Any] = yaml.safe_load((REPO / "sweeps" / "default.yaml").read_text())
    data["name"] = "bench-driver"
    data.pop("storage", None)
    if profile.name in ITERATIONS:
        data["stop"] = {"iterations": ITERATIONS[profile.name]}
    if profile.name == "smoke":
        data["search"] = {"mode": "grid", "design": "one_at_a_time", "base_repeats": 1}
        data["factors"] = {name: levels[:1] for name, levels in data["factors"].items()}
    path = work / "driver-sweep.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


FLOOR_SCRIPT = """
import dataclasses, json, os, ray, ray.tune
from memsweep.collect.probe import read_status
ray.init(address="local", include_dashboard=True, dashboard_host="127.0.0.1")
status = read_status(os.getpid())
ray.shutdown()
print(json.dumps(dataclasses.asdict(status)))
"""
"""A driver that does nothing but import Tune and start Ray as ``memsweep run`` does."""


def driver_floor() -> dict[str, int]:
    """Memory of :data:`FLOOR_SCRIPT`'s process: :class:`memsweep.collect.probe.StatusMemory`
    as a dict (bytes)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    # Ray 2.60 turns token auth on when ~/.ray/auth_token exists; say the mode, as
    # memsweep's own in-process clusters do.
    env.setdefault("RAY_AUTH_MODE", "disabled")
    done = subprocess.run(
        [sys.executable, "-c", FLOOR_SCRIPT],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"the driver floor script exited {done.returncode}: {done.stderr[-500:]}"
        )
    status: dict[str, int] = json.loads(done.stdout.strip().splitlines()[-1])
    return status


def run(profile: Profile, work: Path) -> tuple[list[Row], dict[str, Any]]:
    """Run the sweep in a ``memsweep run`` subprocess and read its driver's samples."""
    timer = Timer()
    work.mkdir(parents=True, exist_ok=True)
    sweep = _sweep_file(profile, work)
    storage = work / "driver-results"
    log(f"driver: memsweep run {sweep.name} ({profile.name} profile)")
    memsweep_run(sweep, storage)
    results = open_results(str(storage))
    driver = driver_peak_rss(results)
    trials = results.table("trials").num_rows
    if driver is None:
        raise RuntimeError("the sweep's samples hold no row of role driver")
    peak = driver.rss_bytes
    stop = (
        f"{ITERATIONS[profile.name]} iterations per trial"
        if profile.name in ITERATIONS
        else "the sweep's own stop rule"
    )
    row = Row(
        key="driver.peak_rss",
        section="driver",
        figure=f"driver peak RSS during the default sweep ({trials} trials, {stop})",
        tool="memsweep run",
        unit="bytes",
        stat=Stat.one(float(peak)),
        goal=f"≤ {DRIVER_GOAL_BYTES / 1e6:.0f} MB",
        status="met" if peak <= DRIVER_GOAL_BYTES else "MISSED",
        note=f"largest RSS of the driver's own samples (role driver): "
        f"{(driver.anon_bytes or 0) / 1e6:.0f} MB anonymous (its own), "
        f"{(driver.file_bytes or 0) / 1e6:.0f} MB of mapped library files that Ray's "
        "processes share (more when the page cache holds the whole libraries, as after a "
        "fresh install); before #16.3 the driver imported RLlib/TF for placement groups: "
        "1.33 GB",
    )
    log("driver: the floor (import ray.tune, ray.init) in a subprocess")
    floor = driver_floor()
    floor_row = Row(
        key="driver.floor_rss",
        section="driver",
        figure="RSS of a process that only imports ray.tune and starts Ray as memsweep run does",
        tool="Ray + Tune",
        unit="bytes",
        stat=Stat.one(float(floor["rss_bytes"])),
        note=f"the floor under the driver's figure: {floor['rss_anon_bytes'] / 1e6:.0f} MB "
        f"anonymous, {floor['rss_file_bytes'] / 1e6:.0f} MB of mapped library files; the "
        f"driver's own part during the sweep is its anonymous memory above the floor's: "
        f"{((driver.anon_bytes or 0) - floor['rss_anon_bytes']) / 1e6:.0f} MB (Tune's loop "
        "and trial state, memsweep's collector)",
    )
    actor = sampler_actor_figures(str(storage))
    cpu = None if actor["cpu_fraction"] is None else 100 * actor["cpu_fraction"]
    idle = actor["idle_worker_cpu_fraction"]
    rounds = actor["rounds_fraction"]
    actor_row = Row(
        key="sampler.actor_cpu.default_sweep",
        section="sampler",
        figure=f"NodeSampler actor CPU over the whole default sweep ({trials} trials, {stop}, "
        f"~{actor['processes_per_round'] or 0:.0f} processes a round)",
        tool="memsweep 10 Hz",
        unit="%cpu",
        stat=None if cpu is None else Stat.one(cpu),
        goal="≤ 1% of a core",
        status="not measured" if cpu is None else "met" if cpu <= 1.0 else "MISSED",
        note="its own cpu_time_s from its first sample to its last (trial start-ups included)"
        + (
            f"; of which its sampling rounds (their wall time): {100 * rounds:.1f}%"
            if rounds
            else ""
        )
        + (f"; an idle Ray worker in the same run: {100 * idle:.1f}% cpu" if idle else "")
        if cpu is not None
        else "the sweep was shorter than 2 s of the sampler's own samples",
    )
    return [row, floor_row, actor_row], {
        "peak_rss_bytes": peak,
        "anon_bytes": driver.anon_bytes,
        "file_bytes": driver.file_bytes,
        "floor": floor,
        "sampler_actor": actor,
        "trials": trials,
        **timer.done(),
    }

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
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

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
    return [row], {
        "peak_rss_bytes": peak,
        "anon_bytes": driver.anon_bytes,
        "file_bytes": driver.file_bytes,
        "trials": trials,
        **timer.done(),
    }

"""Attribution: does memsweep put each process, and its bytes, in the right trial and role?

A two-node ``ray.cluster_utils.Cluster`` (two raylets on this machine, 1 CPU each) runs
a memsweep sweep of two concurrent DQN trials (1 and 2 remote env runners), through
:func:`memsweep.run.sweep.run_study` as ``memsweep run`` does. The ground truth comes from
the workload itself, in Tune's ``result.json`` of each trial: ``pid`` (the trainable's
process, filled in by Tune) and ``memsweep/built_env_runner_pids`` (each env runner's
``os.getpid()``, the local one being the trainable). Both nodes share one kernel, so a
pid names one process across the cluster.

Compared, between each trial's first and last result (when all its processes surely
exist): every sample row of a ground-truth process must carry that trial and role
(``trainable`` or ``env_runner``).

Double counting: no process may be sampled by both nodes' samplers, and the sum of
per-process PSS over everything sampled (per second, both nodes) must stay below the
memory the kernel says processes map at all, ``AnonPages + Mapped`` from
``/proc/meminfo`` (read here by the benchmark, 4 times a second), where a sum of RSS
counts each shared page once per process that maps it. The sum is also compared with
the node's used memory (``MemTotal - MemAvailable``) as the issue asks; that one
excludes file pages the kernel could reclaim, shared libraries among them, which PSS
includes: above 100% there is not double counting.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from benchlib import WORKER_ENV, Profile, Row, Stat, Timer, log, with_seconds

GOAL_PROCESSES = 1.0
GOAL_BYTES = 0.99


class MeminfoPoller:
    """``/proc/meminfo`` every ``interval_s`` on a thread: the kernel's own totals."""

    KEYS = ("MemTotal", "MemFree", "MemAvailable", "AnonPages", "Mapped", "Shmem")

    def __init__(self, interval_s: float = 0.25) -> None:
        self.interval_s = interval_s
        self.readings: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-meminfo", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            reading: dict[str, float] = {"t": time.time()}
            for line in Path("/proc/meminfo").read_text().splitlines():
                key, _, rest = line.partition(":")
                if key in self.KEYS:
                    reading[key] = float(rest.split()[0]) * 1024
            self.readings.append(reading)
            self._stop.wait(self.interval_s)

    def __enter__(self) -> MeminfoPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def run_two_node_sweep(profile: Profile, storage: Path) -> None:
    """The sweep on a fresh two-node cluster, which is shut down after."""
    from memsweep.run.sweep import run_study
    from memsweep.spec import parse_study
    from memsweep.testing.raycluster import two_node_cluster, two_node_sweep

    sweep = two_node_sweep("bench-attribution", profile.attribution_iterations, storage)
    with two_node_cluster(WORKER_ENV, log_to_driver=False):
        with contextlib.redirect_stdout(sys.stderr):
            outcome = run_study(parse_study(sweep, "bench-attribution"))
        if outcome.num_errors:
            raise RuntimeError(f"{outcome.num_errors} attribution trial(s) failed; see {storage}")


def ground_truth(storage: Path) -> dict[str, dict[str, Any]]:
    """trial id → its processes' roles and the span of its results, from Tune's files."""
    truth: dict[str, dict[str, Any]] = {}
    for path in sorted((storage / "tune").glob("*/result.json")):
        results = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if not results:
            continue
        last = results[-1]
        trainable = int(last["pid"])
        roles = {pid: "env_runner" for pid in last["memsweep/built_env_runner_pids"]}
        roles[trainable] = "trainable"
        truth[last["trial_id"]] = {
            "roles": roles,
            # Tune's timestamps are whole seconds: floor of the first, floor of the last.
            "from_s": min(r["timestamp"] for r in results),
            "to_s": max(r["timestamp"] for r in results),
            "num_workers": len(roles) - 1,
        }
    return truth


def compare(
    storage: Path, truth: dict[str, dict[str, Any]], meminfo: list[dict[str, float]]
) -> dict[str, Any]:
    """Attribution and double-counting figures from memsweep's Parquet vs the truth."""
    import pandas as pd

    from memsweep.store import open_results

    results = open_results(storage)
    samples = with_seconds(
        results.table(
            "samples",
            columns=[
                "ts",
                "node_id",
                "pid",
                "create_time",
                "trial_id",
                "role",
                "rss_bytes",
                "pss_bytes",
            ],
        )
    )
    processes = []
    right_bytes = all_bytes = 0.0
    extra: list[dict[str, Any]] = []
    for trial_id, facts in truth.items():
        window = samples[(samples["t"] >= facts["from_s"]) & (samples["t"] <= facts["to_s"])]
        for pid, role in facts["roles"].items():
            rows = window[window["pid"] == pid]
            right = (rows["trial_id"] == trial_id) & (rows["role"] == role)
            processes.append(
                {
                    "trial_id": trial_id,
                    "pid": pid,
                    "role": role,
                    "rows": len(rows),
                    "right_rows": int(right.sum()),
                    "seen_as": sorted(
                        {f"{t}/{r}" for t, r in zip(rows["trial_id"], rows["role"], strict=True)}
                    ),
                }
            )
            all_bytes += float(rows["rss_bytes"].sum())
            right_bytes += float(rows.loc[right, "rss_bytes"].sum())
        claimed = window[
            (window["trial_id"] == trial_id) & ~window["pid"].isin(list(facts["roles"]))
        ]
        for pid, rows in claimed.groupby("pid"):
            extra.append(
                {"trial_id": trial_id, "pid": int(pid), "roles": sorted(set(rows["role"]))}
            )
    correct = [p for p in processes if p["rows"] and p["right_rows"] == p["rows"]]

    # The same process sampled by two nodes' samplers would be counted twice.
    nodes_per_process = samples.groupby(["pid", "create_time"])["node_id"].nunique()
    double_sampled = int((nodes_per_process > 1).sum())

    # Full rounds (PSS present), one per node per second: sums across nodes vs used memory.
    full = samples.dropna(subset=["pss_bytes"]).copy()
    full["second"] = full["t"].astype("int64")
    per_node = full.groupby(["second", "node_id"]).agg(
        pss=("pss_bytes", "sum"), rss=("rss_bytes", "sum")
    )
    node_count = samples["node_id"].nunique()
    sums = per_node.groupby("second").agg(
        pss=("pss", "sum"), rss=("rss", "sum"), nodes=("pss", "size")
    )
    sums = sums[sums["nodes"] == node_count]
    kernel = pd.DataFrame(meminfo)
    kernel["second"] = kernel["t"].astype("int64")
    kernel["mapped_bytes"] = kernel["AnonPages"] + kernel["Mapped"]
    kernel["used_bytes"] = kernel["MemTotal"] - kernel["MemAvailable"]
    per_second = kernel.groupby("second")[["mapped_bytes", "used_bytes"]].median()
    sums = sums.join(per_second, how="inner")
    trial_rows = full[full["trial_id"].notna()]
    trial_pss = float(trial_rows["pss_bytes"].sum())
    return {
        "processes": processes,
        "correct_processes": len(correct),
        "right_bytes": right_bytes,
        "all_bytes": all_bytes,
        "extra": extra,
        "double_sampled": double_sampled,
        "pss_over_mapped": (sums["pss"] / sums["mapped_bytes"]).tolist(),
        "rss_over_mapped": (sums["rss"] / sums["mapped_bytes"]).tolist(),
        "pss_over_used": (sums["pss"] / sums["used_bytes"]).tolist(),
        "rss_over_pss": (sums["rss"] / sums["pss"]).tolist(),
        "trial_rss_over_pss": float(trial_rows["rss_bytes"].sum()) / trial_pss
        if trial_pss
        else None,
        "nodes": node_count,
    }


def run(profile: Profile, work: Path) -> tuple[list[Row], dict[str, Any]]:
    """Start the two-node cluster, run the sweep, compare (shuts down any Ray first)."""
    timer = Timer()
    storage = work / "two-nodes"
    log(
        "attribution: two-node cluster, two concurrent DQN trials, "
        f"{profile.attribution_iterations} iterations"
    )
    with MeminfoPoller() as meminfo:
        run_two_node_sweep(profile, storage)
    truth = ground_truth(storage)
    if len(truth) != 2:
        raise RuntimeError(f"expected 2 trials with results in {storage}/tune, found {len(truth)}")
    found = compare(storage, truth, meminfo.readings)
    total = len(found["processes"])
    wrong = [p for p in found["processes"] if not (p["rows"] and p["right_rows"] == p["rows"])]
    process_fraction = found["correct_processes"] / total
    byte_fraction = found["right_bytes"] / found["all_bytes"] if found["all_bytes"] else None
    wrong_note = "; ".join(
        f"pid {p['pid']} ({p['role']}) seen as {','.join(p['seen_as']) or 'never sampled'}"
        for p in wrong
    )
    extra_note = (
        f"{len(found['extra'])} other process(es) also put in a trial: "
        + ", ".join(f"{e['pid']} as {'/'.join(e['roles'])}" for e in found["extra"])
        if found["extra"]
        else "no other process put in a trial"
    )
    pss = Stat.of(found["pss_over_mapped"])
    rss_over_pss = Stat.of(found["rss_over_pss"])
    truth_rows = sum(p["rows"] for p in found["processes"])
    rows = [
        Row(
            key="attribution.processes",
            section="attribution",
            figure=f"trial processes in the right trial and role ({total}, 2 trials, 2 nodes)",
            tool="memsweep",
            unit="fraction",
            stat=Stat.one(process_fraction),
            goal="100%",
            status="met" if process_fraction >= GOAL_PROCESSES else "MISSED",
            note=wrong_note or extra_note,
        ),
        Row(
            key="attribution.bytes",
            section="attribution",
            figure="RSS of trial processes in the right trial and role",
            tool="memsweep",
            unit="fraction",
            stat=None if byte_fraction is None else Stat.one(byte_fraction),
            goal=f"≥ {GOAL_BYTES:.0%}",
            status="met" if byte_fraction is not None and byte_fraction >= GOAL_BYTES else "MISSED",
            note=f"RSS summed over the {truth_rows} samples of the {total} processes",
        ),
        Row(
            key="attribution.double_sampled",
            section="attribution",
            figure="processes sampled by both nodes' samplers",
            tool="memsweep",
            unit="count",
            stat=Stat.one(found["double_sampled"]),
            goal="0",
            status="met" if found["double_sampled"] == 0 else "MISSED",
        ),
        Row(
            key="attribution.pss_vs_mapped",
            section="attribution",
            figure="Σ PSS of all sampled processes ÷ kernel AnonPages+Mapped (per second)",
            tool="memsweep",
            unit="fraction",
            stat=pss,
            goal="≤ 100%",
            status="met" if pss is not None and pss.median <= 1.0 else "MISSED",
            note="judged on the median (the two are read at different moments); the machine's "
            "total includes other tenants' processes",
        ),
        Row(
            key="attribution.rss_vs_mapped",
            section="attribution",
            figure="Σ RSS of all sampled processes ÷ kernel AnonPages+Mapped (per second)",
            tool="sum of RSS",
            unit="fraction",
            stat=Stat.of(found["rss_over_mapped"]),
            note=(
                f"Σ RSS ÷ Σ PSS = {rss_over_pss.median:.2f}× overall, "
                f"{found['trial_rss_over_pss']:.2f}× for trial processes: "
                "what summing RSS double counts"
                if rss_over_pss is not None and found["trial_rss_over_pss"]
                else ""
            ),
        ),
        Row(
            key="attribution.pss_vs_used",
            section="attribution",
            figure="Σ PSS of all sampled processes ÷ node used memory (total − available)",
            tool="memsweep",
            unit="fraction",
            stat=Stat.of(found["pss_over_used"]),
            note="'used' leaves out reclaimable file pages that PSS counts (shared libraries): "
            "above 100% is not double counting",
        ),
    ]
    return rows, {"truth": truth, **found, **timer.done()}

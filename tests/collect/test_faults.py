"""Fault injection: what the user sees and exactly what stays on disk when things break.

Memory runs out (Ray's OOM killer, the kernel's, memsweep's own budget), the driver is
SIGKILLed mid-write, a sampler actor dies, the results disk fills or is read-only, and
the user feeds malformed sweep files and flags. Each test asserts the one-line message
(never a traceback), the exit code, the trial statuses and the data kept. The outcomes
are tabulated in ``docs/faults.md``.

The Ray tests (``slow``) run against real Ray, one at a time; the others in seconds.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml

from memsweep.collect import probe
from memsweep.collect.faults import (
    ERROR,
    OOM_KILLED,
    MemoryBudget,
    MemoryUser,
    kill_facts,
    over_budget,
    read_trial_error,
)
from memsweep.collect.kernel import (
    CgroupCounters,
    KernelKill,
    Pressure,
    kernel_killed,
    kernel_oom_kills,
    parse_pressure,
    read_cgroup_counters,
)
from memsweep.spec import parse_study
from memsweep.store import SAMPLES, latest_attempts, open_results
from memsweep.testing.faults_table import FaultCase
from memsweep.testing.raycluster import memsweep, trial_statuses, trials_with_progress

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "corpus"
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# -- the fault table: each case's row, as its tests assert it -----------------------------
# docs/faults.md and README's table are generated from these and the figures the tests
# record (`make faults-doc`; memsweep.testing.faults_table). Edit a row here together
# with its test's assertions, then regenerate.

FAULT_CASES: dict[str, FaultCase] = {
    "ray_oom": FaultCase(
        fault="Ray's memory monitor kills a trial (`RAY_memory_usage_threshold`)",
        sees="the sweep goes on; `memsweep run` exits 1; the summary's status column says `oom_killed`",
        survives="`trials.parquet`: status `oom_killed`, `killed_pid`, `killed_role` (trainable), `killed_node_id`, Ray's own reading of the node (`kill_node_used_bytes`, `kill_node_available_bytes`), a one-line `error` (`Ray's memory monitor killed pid …`); Ray's own word: `ray_exit_type` `NODE_OUT_OF_MEMORY` and `ray_exit_detail` from its worker table, and its kill report's table of the node's top memory users (`kill_memory_users_json`, the killed trainable selected at {killed_gb} GB); every node round's cgroup OOM counters and memory PSI (`node_samples`); the killed process's samples up to the kill, the growth visible ({grown_gb} GB over {trace_samples} samples); the next trial runs and is `terminated`",
        lost="nothing sampled: the process is in every 100 ms sampling round of its node until the kill, so its last sample is from the last round that began before it (and within 1 s of Tune's report of the end)",
        readme=(
            "Ray's memory monitor OOM-kills a trial",
            "the sweep goes on; trial `oom_killed` with the killed pid, role, node and the node's memory at the kill; Ray's exit type (`NODE_OUT_OF_MEMORY`) and its kill report's per-process table; its trace up to the kill",
            "nothing sampled (the process is in every 100 ms round until the kill)",
        ),
    ),
    "tune_without_guard": FaultCase(
        fault="the same, without memsweep's guard",
        sees="—",
        survives="—",
        lost="Ray 2.60's Tune raises `RuntimeError: Caught unexpected exception` for an `OutOfMemoryError` and ends `Tuner.fit()`, the whole sweep with it; memsweep wraps that one method during a sweep (`memsweep.run.workarounds.tune`)",
    ),
    "kernel_oom": FaultCase(
        fault="the kernel's OOM killer SIGKILLs a trial's worker (a memory cgroup at 300 MB: cgroup v2 where the memory controller is there, else v1)",
        sees="the sweep goes on",
        survives="status `oom_killed` only because the node's kernel log (`/dev/kmsg`) names that pid after the process started; `error` says `the kernel's OOM killer killed pid … (trainable) in memory cgroup …; Ray saw its worker vanish`; the kernel's evidence: the cgroup that ran out (`kill_cgroup`), its OOM kill count and peak (`kill_cgroup_oom_kills`, `kill_cgroup_peak_bytes`: v2 `memory.events`/`memory.peak`, v1 `memory.oom_control`/`memory.max_usage_in_bytes`; here {cgroup_peak_mb} MB on cgroup v{cgroup_version}), the anon RSS the kernel logged ({anon_mb} MB); Ray's `ray_exit_type` `SYSTEM_ERROR`; role, node, memsweep's last node reading; the trace in every sampling round until the kill, its anonymous RSS growing {grown_mb} MB from its rest inside the cgroup; the other trial `terminated`",
        lost="nothing sampled. Without a readable kernel log the status is `error` (Ray's text alone lists OOM as one of three causes)",
        readme=(
            "the kernel's OOM killer SIGKILLs a trial's worker",
            "the sweep goes on; `oom_killed` when the kernel log names the pid (else `error`), with the cgroup that ran out and its `oom_kill` count and peak",
            "nothing sampled",
        ),
    ),
    "over_budget": FaultCase(
        fault="a trial grows past `resources.memory_budget` (600 MB per trial, checked every 0.5 s flush)",
        sees="memsweep kills the trial's trainable actor; the sweep goes on",
        survives="status `over_budget`, `memory_budget_bytes`, `budget_measured_bytes` ({measured_mb} MB), an `over_budget` event; its samples; the other trial `terminated`",
        lost="the trial's remaining run (by design); overshoot is at most one flush interval of growth (it held at most {held_mb} MB here)",
        readme=(
            "a trial passes `resources.memory_budget`",
            "memsweep kills it: `over_budget`, with the figure; the sweep goes on",
            "the trial's remaining run, by design (overshoot ≤ one flush of growth)",
        ),
    ),
    "driver_sigkill": FaultCase(
        fault="the driver is SIGKILLed while a trial runs (flush every 1 s)",
        sees="—",
        survives="every Parquet file with a final name reads; samples up to {lost_s} s before the kill; `trials.parquet` as last written (trial `running`); `memsweep run --resume` then finishes the sweep in the same folder (both runs' samples kept, by `run_id`) and `memsweep analyze` reads it all",
        lost="at most the last flush interval of samples (plus the rows of processes still waiting for attribution, held up to 30 s at a trial's start)",
        readme=(
            "the driver is SIGKILLed",
            "every Parquet file reads; `memsweep run --resume` finishes the sweep, `analyze` reads it all",
            "at most the last flush (default 2 s)",
        ),
    ),
    "writer_sigkill": FaultCase(
        fault="a writer SIGKILLed at random moments, 8 times, mid-write",
        sees="—",
        survives="every visible Parquet file is complete; the dataset reads whole",
        lost="the interrupted writes, as hidden `.part-….tmp` files that readers skip ({leftovers} of 8 kills here)",
    ),
    "sampler_killed": FaultCase(
        fault="the node's sampler actor is killed",
        sees="nothing; sampling resumes",
        survives="events `sampler_lost` (detail: samples since the last drain are lost) then `sampler_restarted`; samples before and after; the trial `terminated`",
        lost="one hole in that node's samples, shorter than two flush intervals plus a restart ({hole_s} s here)",
        readme=(
            "a sampler actor dies",
            "restarted; `sampler_lost`/`sampler_restarted` events",
            "one hole of a few seconds on that node",
        ),
    ),
    "disk_full": FaultCase(
        fault="the results disk fills up (a 512 KiB tmpfs)",
        sees="the sweep stops at once (the next trial never starts); no traceback; exit 3; last line `memsweep: Cannot write …: No space left on device. Free space there or choose another 'storage' (--storage).`; Tune's own failures to save are one line each",
        survives="every Parquet file written before the disk filled reads ({rows} sample rows); `trials.parquet` as last written",
        lost="what did not fit",
        readme=(
            "the results disk fills up / is read-only",
            "one line, exit 3, the sweep stops; what was written reads",
            "what did not fit",
        ),
    ),
    "unwritable": FaultCase(
        fault="the results folder is read-only (a read-only tmpfs) or cannot be made (under a file)",
        sees="one line, exit 3, before Ray starts",
        survives="nothing written",
        lost="—",
    ),
    "malformed_sweeps": FaultCase(
        fault="{corpus} malformed sweep files in `tests/corpus/sweeps/` (billion laughs, a 2^40 doubling bomb, a self-referencing alias, > 100 aliases, `!!python/object/apply`, `!!python/name`, an env id `os:system` that gymnasium would import, binary junk, UTF-16, NUL bytes, empty, comments only, list or scalar at the top, unknown keys deep inside, wrong types, huge numbers, NaN/inf, bad sizes, tabs, unterminated strings, unhashable keys) plus generated ones (20 000-deep nesting, 2 MB file, 100 000-character value, a folder, a FIFO, a missing file)",
        sees="`memsweep validate` and `memsweep run`: one line naming the file and the problem, exit 2, no traceback",
        survives="nothing is written, nothing runs, no code in the file is evaluated (the `touch` in the object tag never runs)",
        lost="—",
        readme=(
            "{corpus} malformed sweep files (YAML bombs, `!!python` tags, binary, …) and wrong flags",
            "one line naming the problem, exit 2, nothing runs",
            "—",
        ),
    ),
    "wrong_flags": FaultCase(
        fault="wrong flags to `memsweep`, `run`, `validate`, `analyze`, `analyze predict`",
        sees='one line (argparse\'s message + "see … --help"), non-zero exit',
        survives="—",
        lost="—",
    ),
    "damaged_results": FaultCase(
        fault="a results folder from a newer memsweep, with a broken `versions.json`, a truncated `trials.parquet`, or not a results folder at all",
        sees="`memsweep analyze`: one line naming the problem and the fix (upgrade memsweep, restore the file from a copy, point at a results folder), exit 3",
        survives="the folder is only read",
        lost="—",
    ),
    "damaged_part": FaultCase(
        fault="a truncated or overwritten Parquet file in `samples/` or `progress/` (a copy gone wrong, a disk error)",
        sees="`memsweep analyze` and `compare` analyse the rest (exit 0) and name each skipped file, why and the fix in the report's missing list; one line, exit 3, only when no samples file is readable",
        survives="the folder is only read; every readable file's rows are analysed ({skipped} of {parts} sample files skipped here)",
        lost="the rows only the damaged file holds",
        readme=(
            "a damaged Parquet file in a results folder",
            "`analyze` goes on without it and names it and the fix (restore it from a copy)",
            "the rows only that file holds",
        ),
    ),
    "credentials": FaultCase(
        fault="credentials in the environment (`AWS_*`, a password) and a token in `~/.ray/auth_token`",
        sees="—",
        survives="none of them in the results folder (Parquet, `study.yaml`, `versions.json`, Tune's files), stdout, stderr, or the logs of the Ray memsweep started",
        lost="—",
    ),
    "loopback": FaultCase(
        fault="who can reach the embedded Ray",
        sees="—",
        survives="every listening socket of every process of `memsweep run`'s Ray (GCS, raylet, workers, dashboard and its agents) is on 127.0.0.1",
        lost="—",
    ),
}


# -- helpers ---------------------------------------------------------------------------


def assert_one_line(result: subprocess.CompletedProcess[str], *, prefix: str = "memsweep: ") -> str:
    """Non-zero exit, no traceback, exactly one line on stderr that starts with prefix."""
    assert result.returncode != 0, result.stdout[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith(prefix), lines[0]
    return lines[0]


def every_parquet_file_reads(root: Path) -> int:
    """Read every visible Parquet file under root whole; return how many there were."""
    files = [
        p
        for p in root.rglob("*.parquet")
        if not any(part.startswith(".") for part in p.relative_to(root).parts)
    ]
    for path in files:
        pq.read_table(path)
    return len(files)


# -- OOM kills: reading what Ray and the kernel say (pure) -----------------------------


def test_rays_memory_monitor_report_names_the_killed_pid_and_the_nodes_memory(fault: Any) -> None:
    # GIVEN the error text Tune wrote for a trial Ray's memory monitor killed (Ray 2.60)
    text = (CORPUS / "errors" / "ray_2.60_memory_monitor.txt").read_text()
    # WHEN it is read
    kill = read_trial_error(text)
    # THEN the trial is oom_killed, the selected (not merely considered) pid is the one
    # named, and the node's memory is Ray's exact reading
    assert kill.status == OOM_KILLED
    assert kill.killed_pids == (18887,)
    assert kill.node_id == "e4a236eeec8a38f089732dd3f50f2f6a08e67cf035e5ea990ba414f6"
    assert (kill.node_used_bytes, kill.node_limit_bytes) == (4772548608, 25276510208)
    assert kill.summary is not None and "pid 18887" in kill.summary and "\n" not in kill.summary
    fault("ray_oom")


def test_the_older_ray_oom_message_is_read_too() -> None:
    text = (
        "ray.exceptions.OutOfMemoryError: Task was killed due to the node running low on memory.\n"
        "Memory on the node (IP: 10.0.0.5, ID: ab12) where the task (actor ID: ff, name=X, "
        "pid=4242, memory used=2.1GB) was running was 30.10GB / 31.00GB (0.97), which exceeds "
        "the memory usage threshold of 0.95."
    )
    kill = read_trial_error(text)
    assert (kill.status, kill.killed_pids, kill.node_ip) == (OOM_KILLED, (4242,), "10.0.0.5")
    assert kill.node_used_bytes == 30_100_000_000 and kill.node_limit_bytes == 31_000_000_000


def test_a_vanished_worker_is_an_error_unless_the_kernel_log_names_its_pid(fault: Any) -> None:
    # GIVEN Ray's report of a worker that died of SIGKILL (it lists OOM as one of three causes)
    kill = read_trial_error((CORPUS / "errors" / "kernel_sigkill_2.60.txt").read_text())
    # THEN by itself it is no verdict
    assert (kill.status, kill.killed_pids, kill.vanished) == (ERROR, (5747,), True)
    # AND the kernel log decides: a memcg OOM kill of that pid after the process started
    records = [
        "6,1,3286645960,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,"
        "mems_allowed=0,oom_memcg=/x,task_memcg=/x,task=ray::ImplicitFu,pid=5747,uid=0",
        "3,2,3286646035,-;Memory cgroup out of memory: Killed process 5747 (ray::ImplicitFu) "
        "total-vm:9415532kB, anon-rss:502872kB",
        "6,3,3300000000,-;Out of memory: Killed process 777 (python) total-vm:1kB",
        "garbage without a header",
    ]
    assert kernel_oom_kills(records) == {5747: 3286.646035, 777: 3300.0}
    assert kernel_killed(5747, started_since_boot_s=3280.0, records=records) is True
    # (a kill of an earlier process that had the same pid does not count)
    assert kernel_killed(5747, started_since_boot_s=3290.0, records=records) is False
    assert kernel_killed(1234, started_since_boot_s=None, records=records) is False
    assert kernel_killed(5747, started_since_boot_s=None, records=None) is None
    fault("kernel_oom")


def test_the_killed_process_is_settled_from_its_samples_and_the_kernels_word() -> None:
    vanished = read_trial_error((CORPUS / "errors" / "kernel_sigkill_2.60.txt").read_text())
    seen = (5747, "node-a", "trainable", 1_700_000_000.0)
    kernel = KernelKill(
        True, "/x", 502_872 * 1024, CgroupCounters("/sys/fs/cgroup/x", 2, 1, 1, 9, 7)
    )
    # a vanished worker the kernel log names: oom_killed, with memsweep's node reading and
    # the kernel's evidence (the cgroup that ran out, its counters, the anon RSS at the kill)
    facts = kill_facts(vanished, seen, (7_000, 1_000), kernel, ("SYSTEM_ERROR", "exited"))
    assert facts["status"] == OOM_KILLED
    assert facts["error"] == (
        "the kernel's OOM killer killed pid 5747 (trainable) in memory cgroup /x; "
        "Ray saw its worker vanish"
    )
    assert (
        facts["killed_role"],
        facts["kill_node_used_bytes"],
        facts["kill_node_available_bytes"],
    ) == ("trainable", 7_000, 1_000)
    assert (
        facts["kill_cgroup"],
        facts["kill_cgroup_oom_kills"],
        facts["kill_cgroup_peak_bytes"],
    ) == (
        "/x",
        1,
        7,
    )
    assert (facts["kill_anon_rss_bytes"], facts["ray_exit_type"]) == (514_940_928, "SYSTEM_ERROR")
    # one it does not name (or a kernel log that cannot be read) stays an error
    assert "status" not in kill_facts(vanished, seen, (7_000, 1_000), KernelKill(False))
    assert "status" not in kill_facts(vanished, seen, (7_000, 1_000), KernelKill(None))
    assert "status" not in kill_facts(vanished, seen, (7_000, 1_000), None)
    # Ray's own reading of the node wins over memsweep's; its kill report's table is kept
    ray_kill = read_trial_error((CORPUS / "errors" / "ray_2.60_memory_monitor.txt").read_text())
    facts = kill_facts(
        ray_kill,
        (18887, "node-b", "trainable", None),
        (1, 2),
        None,
        ("NODE_OUT_OF_MEMORY", "1 worker(s) were killed"),
    )
    users = json.loads(facts.pop("kill_memory_users_json"))
    assert facts == {
        "killed_pid": 18887,
        "killed_role": "trainable",
        "killed_node_id": "node-b",
        "ray_exit_type": "NODE_OUT_OF_MEMORY",
        "ray_exit_detail": "1 worker(s) were killed",
    }
    assert users[0] == {
        "pid": 18887,
        "memory_bytes": 1_770_000_000,
        "command": "ray::MemsweepTrainable.train",
        "selected": True,
    }
    # a process never sampled: only what Ray's report says by itself
    assert kill_facts(vanished, None, (None, None), None) == {}
    assert set(kill_facts(ray_kill, None, (None, None), None)) == {"kill_memory_users_json"}


def test_rays_kill_report_table_is_read_with_the_selected_worker_marked(fault: Any) -> None:
    # GIVEN Ray 2.60's OOM error text, whose report ends in "Top 10 memory users"
    kill = read_trial_error((CORPUS / "errors" / "ray_2.60_memory_monitor.txt").read_text())
    # THEN its ten rows are kept in order, in bytes, and only the killed worker is selected
    assert len(kill.memory_users) == 10
    assert [u.pid for u in kill.memory_users][:4] == [18887, 18026, 19013, 18580]
    assert [u.pid for u in kill.memory_users if u.selected] == [18887]
    assert kill.memory_users[3] == MemoryUser(18580, 100_000_000, "ray::NodeSampler", False)
    # AND a selected worker the table leaves out is added from its "actual memory used"
    text = (
        "1 worker(s) were killed due to the node running low on memory.\n"
        "Selected to kill: (Actor(ab): job ID=01, lease ID=02, task name=T.train, "
        "required resources={}, pid=77, actual memory used=2.50GB, worker ID=ff)\n"
    )
    assert read_trial_error(text).memory_users == (MemoryUser(77, 2_500_000_000, "T.train", True),)
    # AND an older Ray's text without a table gives none
    assert (
        read_trial_error(
            "OutOfMemoryError: Task was killed due to the node running low on memory."
        ).memory_users
        == ()
    )
    fault("ray_oom")


def test_memory_events_and_pressure_files_are_read_as_the_kernel_writes_them(
    tmp_path: Path, fault: Any
) -> None:
    # GIVEN a cgroup-v2 memory.events / memory.peak and a PSI file, as the kernel documents them
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "memory.events").write_text(
        "low 0\nhigh 0\nmax 42\noom 3\noom_kill 2\noom_group_kill 0\n"
    )
    (v2 / "memory.peak").write_text("314572800\n")
    counters = read_cgroup_counters(v2)
    assert counters == CgroupCounters(str(v2), 2, 2, 3, 42, 314_572_800)
    pressure = parse_pressure(
        "some avg10=1.50 avg60=0.20 avg300=0.00 total=123456\n"
        "full avg10=0.75 avg60=0.10 avg300=0.00 total=65432\n"
    )
    assert pressure == Pressure(1.5, 0.75, 123_456, 65_432)
    assert parse_pressure("garbage") is None
    assert read_cgroup_counters(tmp_path / "nothing") is None
    # AND this machine's own files read (v1 memory.oom_control where the memory controller
    # is on v1, memory.events where it is on v2; /proc/pressure/memory where PSI is on)
    own = probe.counters_dir(os.getpid())
    if own is not None:
        real = read_cgroup_counters(own)
        assert real is not None and real.version in (1, 2) and real.oom_kills is not None
    node = probe.read_node()
    if Path("/proc/pressure/memory").exists():
        assert node.pressure is not None and node.pressure.some_total_us >= 0
    fault("kernel_oom")


def test_a_python_exception_in_a_trial_is_an_error_not_a_kill() -> None:
    kill = read_trial_error("ray::ImplicitFunc.train() (pid=12, ip=1.2.3.4)\nValueError: boom")
    assert (kill.status, kill.killed_pids, kill.vanished) == (ERROR, (), False)


def _samples(rows: list[tuple[str, int, str | None, int]]) -> pa.Table:
    """(node, ts µs, trial, rss) rows → a samples table."""
    n = len(rows)
    columns: dict[str, Any] = {name: [None] * n for name in SAMPLES.names}
    columns.update(
        ts=[r[1] for r in rows],
        node_id=[r[0] for r in rows],
        pid=list(range(n)),
        trial_id=[r[2] for r in rows],
        role=["trainable"] * n,
        rss_bytes=[r[3] for r in rows],
    )
    return pa.Table.from_pydict(columns, schema=SAMPLES)


def test_a_trial_over_its_budget_is_found_in_the_latest_round_of_every_node(fault: Any) -> None:
    # GIVEN a trial spread over two nodes (700 MB + 400 MB now, 2 GB a round earlier),
    # another trial at 300 MB, and Ray's own processes
    table = _samples(
        [
            ("n1", 1, "big", 2_000_000_000),
            ("n1", 2, "big", 700_000_000),
            ("n2", 5, "big", 400_000_000),
            ("n1", 2, "small", 300_000_000),
            ("n1", 2, None, 5_000_000_000),
        ]
    )
    budget = MemoryBudget(1_000_000_000, "trial")
    # THEN only the big trial is over 1 GB, by the sum of its latest rounds
    [breach] = over_budget(table, {}, budget)
    assert (breach.trial_id, breach.measured_bytes) == ("big", 1_100_000_000)
    assert "1.10 GB" in breach.detail and "1.00 GB per trial" in breach.detail
    # AND with a node budget, the node over it loses its biggest trial
    [by_node] = over_budget(
        table, {"n1": 9_000_000_000, "n2": 100}, MemoryBudget(8_000_000_000, "node")
    )
    assert (by_node.trial_id, by_node.node_id, by_node.measured_bytes) == (
        "big",
        "n1",
        9_000_000_000,
    )
    assert over_budget(table, {"n1": 1}, MemoryBudget(8_000_000_000, "node")) == []
    fault("over_budget")


def test_memory_budget_is_a_size_with_a_scope() -> None:
    study = parse_study(
        {"name": "b", "resources": {"memory_budget": "1.5GiB", "budget_scope": "node"}}
    )
    assert (study.resources.memory_budget, study.resources.budget_scope) == (
        int(1.5 * 2**30),
        "node",
    )
    assert parse_study({"name": "b"}).resources.memory_budget is None


# -- the Ray 2.60 Tune bug that would end the whole sweep ------------------------------


def _tracked_task() -> Any:
    task = mock.MagicMock()
    task._tracked_actor = mock.MagicMock()
    return task


def test_upstream_tune_still_ends_the_sweep_on_an_oom_killed_trial(fault: Any) -> None:
    """Remove :func:`memsweep.run.workarounds.tune.tune_survives_oom_kills` once this fails."""
    from ray.air.execution._internal.actor_manager import RayActorManager
    from ray.exceptions import OutOfMemoryError

    manager = mock.MagicMock()
    with pytest.raises(RuntimeError, match="Caught unexpected exception"):
        RayActorManager._actor_task_failed(manager, _tracked_task(), OutOfMemoryError("killed"))
    fault("tune_without_guard")


def test_with_memsweeps_guard_an_oom_killed_trial_fails_alone_as_an_actor_error(fault: Any) -> None:
    from ray.air.execution._internal.actor_manager import RayActorManager
    from ray.exceptions import OutOfMemoryError, RayActorError

    from memsweep.run.workarounds.tune import TrialOutOfMemoryError, tune_survives_oom_kills

    manager, task = mock.MagicMock(), _tracked_task()
    original = RayActorManager._actor_task_failed
    with tune_survives_oom_kills():
        RayActorManager._actor_task_failed(
            manager, task, OutOfMemoryError("1 worker(s) were killed")
        )
    assert RayActorManager._actor_task_failed is original
    # Tune's actor-died path ran: the actor is marked failed and the trial told
    manager._failed_actor_ids.add.assert_called_once()
    (_, error), _ = task._on_error.call_args
    assert isinstance(error, TrialOutOfMemoryError) and isinstance(error, RayActorError)
    assert str(error) == "1 worker(s) were killed"
    fault("tune_without_guard")


def test_the_sweep_stopper_keeps_tunes_limits_and_stops_all_on_demand() -> None:
    from memsweep.run.workarounds.tune import SweepStopper

    broken = threading.Event()
    stopper = SweepStopper({"training_iteration": 3, "memsweep/env_steps": 100}, broken.is_set)
    assert not stopper("t", {"training_iteration": 2, "memsweep/env_steps": 99})
    assert stopper("t", {"training_iteration": 3})
    assert stopper("t", {"memsweep": {"env_steps": 100}})
    assert not stopper("t", {"memsweep/env_steps": None})
    assert not stopper.stop_all()
    broken.set()
    assert stopper.stop_all()


# -- bad input: sweep files and flags --------------------------------------------------


def _generated_corpus(root: Path) -> dict[str, Path]:
    """Malformed inputs too big or too odd to keep in the repository."""
    root.mkdir(parents=True, exist_ok=True)
    files = {
        "deep_nesting": ("name: x\nfactors: " + "[" * 20_000 + "]" * 20_000 + "\n"),
        "two_megabytes": ("name: x\ndescription: " + "a" * 2_000_000 + "\n"),
        "long_value": ("name: x\nalgorithm: " + "Z" * 100_000 + "\n"),
    }
    out = {}
    for name, text in files.items():
        path = root / f"{name}.yaml"
        path.write_text(text)
        out[name] = path
    (root / "a_folder.yaml").mkdir(exist_ok=True)
    out["a_folder"] = root / "a_folder.yaml"
    out["missing"] = root / "missing.yaml"
    fifo = root / "fifo.yaml"
    if not fifo.exists():
        os.mkfifo(fifo)
    out["fifo"] = fifo
    return out


CORPUS_FILES = sorted((CORPUS / "sweeps").glob("*.yaml"))


@pytest.mark.parametrize("path", CORPUS_FILES, ids=[p.stem for p in CORPUS_FILES])
@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_malformed_sweep_file_gets_one_line_and_exit_2_and_runs_nothing(
    path: Path, command: str, tmp_path: Path, fault: Any
) -> None:
    # WHEN the user validates or runs a malformed sweep file
    result = memsweep(command, path, cwd=tmp_path)
    # THEN one line names the file, the exit code is 2, and nothing ran or was written
    line = assert_one_line(result)
    assert result.returncode == 2
    assert str(path) in line
    assert list(tmp_path.iterdir()) == []
    fault("malformed_sweeps", corpus=str(len(CORPUS_FILES)))


def test_generated_malformed_inputs_get_one_line_too(tmp_path: Path, fault: Any) -> None:
    expected = {
        "deep_nesting": "nested too deeply",
        "two_megabytes": "is not a sweep file",
        "long_value": "chars)",
        "a_folder": "is a folder",
        "missing": "No such sweep file",
        "fifo": "is not a regular file",
    }
    for name, path in _generated_corpus(tmp_path / "corpus").items():
        result = memsweep("validate", path, cwd=tmp_path)
        line = assert_one_line(result)
        assert expected[name] in line, (name, line)
        assert len(line) < 1000, (name, len(line))
    fault("malformed_sweeps", corpus=str(len(CORPUS_FILES)))


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ((), "the following arguments are required: COMMAND"),
        (("frobnicate",), "invalid choice: 'frobnicate'"),
        (("run",), "the following arguments are required: sweep"),
        (("run", "a.yaml", "b.yaml"), "unrecognized arguments: b.yaml"),
        (("run", "--resume"), "the following arguments are required: sweep"),
        (("run", "--storage"), "expected one argument"),
        (("validate", "--explain"), "the following arguments are required: sweep"),
        (("validate", "x.yaml", "--bogus"), "unrecognized arguments: --bogus"),
        # (argparse would say only that a command, or the sweep, is required)
        (("--bogus",), "unrecognized arguments: --bogus: the first word is a command"),
        (("run", "--bogus"), "unrecognized arguments: --bogus; the following arguments"),
        # (the help of the command whose flags are meant, not the top-level one)
        (("analyze", "predict", "{tmp}", "--bogus"), "(see memsweep analyze predict --help)"),
        (("analyze", "designs", "{tmp}", "--sizes", "4,x"), "separated by commas"),
        (("analyze",), "the following arguments are required: COMMAND"),
        (("analyze", "/nonexistent/results"), "No such results folder"),
        (("analyze", "report", "{tmp}", "--confidence", "2"), "--confidence must be in"),
        (("analyze", "predict", "{tmp}", "--budget", "lots"), "--budget"),
        (("analyze", "predict", "{tmp}", "--num-workers", "-3"), "--num-workers"),
        (("analyze", "predict", "{tmp}", "--framework", "jax"), "--framework"),
        (
            ("analyze", "predict", "{tmp}", "--solve-for", "model"),
            "--solve-for: model is not a numeric factor",
        ),
    ],
)
def test_wrong_flags_get_one_line_and_a_non_zero_exit(
    args: tuple[str, ...], says: str, tmp_path: Path, fault: Any
) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = memsweep(*argv, cwd=tmp_path)
    prefix = "memsweep analyze: " if args[:1] == ("analyze",) and len(args) > 1 else "memsweep"
    line = assert_one_line(result, prefix=prefix)
    assert says in line, line
    fault("wrong_flags")


def _copy_of_a_results_folder(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from memsweep.testing.synthetic import factorial_sweep

    source = factorial_sweep(tmp_path_factory.getbasetemp()).path
    target = tmp_path / "results"
    shutil.copytree(source, target)
    return target


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        ("newer_schema", "Upgrade memsweep to read it"),
        (
            "versions_not_json",
            "versions.json cannot be read (Expecting value: line 1 column 1 (char 0)): restore it from a copy of the results folder, or delete it",
        ),
        ("versions_a_list", "versions.json is not a JSON object: restore it"),
        ("trials_truncated", "restore it from a copy of the results folder"),
        ("not_a_results_folder", "Point at results/<sweep-name>"),
        ("a_file", "Point at results/<sweep-name>"),
    ],
)
def test_a_damaged_or_foreign_results_folder_gets_one_line_from_analyze(
    damage: str, says: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, fault: Any
) -> None:
    results = _copy_of_a_results_folder(tmp_path, tmp_path_factory)
    if damage == "newer_schema":
        (results / "versions.json").write_text(json.dumps({"schema_version": 99}))
    elif damage == "versions_not_json":
        (results / "versions.json").write_bytes(b"\x00{not json")
    elif damage == "versions_a_list":
        (results / "versions.json").write_text("[1, 2]")
    elif damage == "trials_truncated":
        data = (results / "trials.parquet").read_bytes()
        (results / "trials.parquet").write_bytes(data[: len(data) // 2])
    elif damage == "not_a_results_folder":
        results = tmp_path / "empty"
        results.mkdir()
    elif damage == "a_file":
        results = tmp_path / "file.txt"
        results.write_text("hello")
    result = memsweep("analyze", results, "--out", tmp_path / "out", cwd=tmp_path, timeout=300)
    line = assert_one_line(result, prefix="memsweep analyze: ")
    assert says in line, line
    assert result.returncode == 3
    fault("damaged_results")


def test_a_truncated_sample_part_is_skipped_named_and_the_rest_analysed(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, fault: Any
) -> None:
    # GIVEN a results folder with one samples part truncated by a copy gone wrong
    results = _copy_of_a_results_folder(tmp_path, tmp_path_factory)
    parts = sorted((results / "samples").glob("part-*.parquet"))
    parts[0].write_bytes(parts[0].read_bytes()[:100])
    # WHEN it is analysed
    result = memsweep("analyze", results, "--out", tmp_path / "out", cwd=tmp_path, timeout=300)
    # THEN the rest is analysed, and the missing list names the file, why and the fix
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert (
        f"missing (1): samples/{parts[0].name} cannot be read (Parquet magic bytes not found in "
        "footer. Either the file is corrupted or this is not a parquet file.): skipped, so the "
        "rows only it holds are not analysed; to include them, restore it from a copy of the "
        f"results folder (committed results: `git checkout -- {parts[0]}`)"
    ) in result.stdout
    assert re.search(r"^synthetic: \d+ trials analysed \(\d+ reached", result.stdout)
    fault("damaged_part", skipped="1", parts=str(len(parts)))


# -- crash safety of the store (no Ray) ------------------------------------------------

_WRITER_LOOP = """
import sys, time
import pyarrow as pa
from memsweep.store import ResultsWriter, PROGRESS
writer = ResultsWriter(sys.argv[1])
rows = [{"ts": 0, "trial_id": "t", "iteration": i, "env_steps": i} for i in range(20000)]
print("ready", flush=True)
while True:
    writer.append_rows("progress", rows)
    writer.replace("trials", [{"trial_id": "t", "status": "running"}] * 2000)
"""


def test_a_writer_sigkilled_at_random_moments_leaves_only_complete_files(
    tmp_path: Path, fault: Any
) -> None:
    # GIVEN a process writing part files and replacing trials.parquet as fast as it can
    results = tmp_path / "results"

    def parts() -> int:
        return len(list((results / "progress").glob("part-*.parquet")))

    for attempt in range(8):
        before = parts()
        proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER_LOOP, str(results)], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        # WHEN it is SIGKILLed at an arbitrary moment after its first part (some land
        # mid-write; waiting for the part, not a fixed time, keeps a loaded machine from
        # killing every writer before it wrote anything: one CI run at load 7 left 7 files)
        deadline = time.monotonic() + 120
        while parts() == before and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.07 * attempt)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    leftovers = len(list(results.rglob(".*.tmp")))
    # THEN every Parquet file with a final name is complete and readable, and the
    # dataset reads whole; interrupted writes left only hidden temporaries, which
    # readers skip
    assert every_parquet_file_reads(results) >= 8 + 1  # a part per writer, and trials
    table = open_results(results).table("progress")
    assert table.num_rows % 20000 == 0 and table.num_rows > 0
    assert open_results(results).table("trials").num_rows == 2000
    print(f"hidden temporaries left by killed writes: {leftovers}")
    fault("writer_sigkill", leftovers=str(leftovers))


def test_an_unwritable_results_folder_stops_the_run_before_ray_with_one_line(
    tmp_path: Path, fault: Any
) -> None:
    sweep = tmp_path / "s.yaml"
    sweep.write_text("name: s\nstop: {iterations: 1}\n")
    # GIVEN a storage location under a regular file (no folder can be made there)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    result = memsweep("run", sweep, "--storage", blocker / "results", cwd=tmp_path)
    line = assert_one_line(result)
    assert result.returncode == 3
    assert "Cannot create the results folder" in line and "storage" in line
    fault("unwritable")


def unavailable(reason: str) -> None:
    """Skip a fault that this machine cannot stage — but never in CI, whose machine (root,
    cgroup v1, mount allowed) stages every one: there a missing capability is a failure,
    so a fault case cannot silently stop being tested."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI's machine is expected to allow it)")
    pytest.skip(reason)


@contextlib.contextmanager
def tmpfs(path: Path, size: str, read_only: bool = False) -> Iterator[Path]:
    """A small tmpfs at path (root only), unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    if mount.returncode != 0:
        unavailable(f"cannot mount a tmpfs here: {mount.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.mark.skipif(not IS_ROOT, reason="mounting a tmpfs needs root")
def test_a_read_only_results_disk_stops_the_run_before_ray_with_one_line(
    tmp_path: Path, fault: Any
) -> None:
    sweep = tmp_path / "s.yaml"
    sweep.write_text("name: s\nstop: {iterations: 1}\n")
    with tmpfs(tmp_path / "ro", "1m", read_only=True) as ro:
        result = memsweep("run", sweep, "--storage", ro / "results", cwd=tmp_path)
    line = assert_one_line(result)
    assert result.returncode == 3
    assert "Read-only file system" in line
    fault("unwritable")


# -- against real Ray: trials killed for memory ----------------------------------------


def run_tune(
    study_data: dict[str, Any], root: Path, param_space: dict[str, Any], cpus: float = 1
) -> tuple[Any, Any]:
    """A Tune run of ``grow_steadily`` with memsweep's callback (and its OOM guard), as in a sweep."""
    from ray import tune

    from memsweep.collect.callback import MemoryCallback
    from memsweep.run.workarounds.tune import tune_survives_oom_kills
    from memsweep.testing.calibration import grow_steadily

    study = parse_study(study_data)
    callback = MemoryCallback.for_study(study, root / "results")
    tuner = tune.Tuner(
        tune.with_resources(grow_steadily, {"cpu": cpus}),
        param_space=param_space,
        tune_config=tune.TuneConfig(max_concurrent_trials=1),
        run_config=tune.RunConfig(storage_path=str(root / "tune"), callbacks=[callback], verbose=0),
    )
    try:
        with tune_survives_oom_kills():
            grid = tuner.fit()
    finally:
        callback.close()
    return grid, open_results(root / "results")


def trials_by_mode(grid: Any, results: Any) -> dict[str, dict[str, Any]]:
    """The trials table's rows, by the ``mode`` each trial's config had."""
    rows = {row["trial_id"]: row for row in results.table("trials").to_pylist()}
    out = {}
    for result in grid:
        # A trial's folder is named <trainable>_<trial id>_<index>_<config>_<time>.
        match = re.search(r"_([0-9a-f]{5}_\d{5})_", Path(result.path).name)
        assert match, result.path
        out[result.config["mode"]] = rows[match.group(1)]
    return out


def trace_of(results: Any, pid: int) -> list[dict[str, Any]]:
    samples = results.table("samples")
    return sorted(samples.filter(pc.equal(samples["pid"], pid)).to_pylist(), key=lambda r: r["ts"])


def anon_at_rest(trace: list[dict[str, Any]]) -> int:
    """Anonymous RSS (bytes) of a trace's rest: the longest run of samples whose RssAnon did
    not change (``grow_steadily``'s ``rest_s`` before it grows, ~10 samples at 0.1 s)."""
    best_start, best_length, start = 0, 0, 0
    for index in range(1, len(trace) + 1):
        if index == len(trace) or trace[index]["rss_anon_bytes"] != trace[start]["rss_anon_bytes"]:
            if index - start > best_length:
                best_start, best_length = start, index - start
            start = index
    return int(trace[best_start]["rss_anon_bytes"])


def assert_trace_ends_at_the_kill(
    results: Any, trial: dict[str, Any], trace: list[dict[str, Any]]
) -> None:
    """The trace runs to the kill: the process is in every sampling round of its node from
    its first sample to its last (so the last is the last round that began before it was
    killed: at most one period before), and it was dead by the node's next round without
    it, or by Tune's report of the trial's end, within two seconds.

    Not within one period: a round can start late while the node frees the killed
    process's gigabytes (CI saw the node's next round start 1.14 s after the last one with
    the killed trainable in it, at a 0.1 s period). What this guards is a trace that stops
    long before the kill (a sampler that dropped the process, or stopped)."""
    first, last = trace[0]["ts"], trace[-1]["ts"]
    node_rounds = results.table("node_samples")
    node_rounds = node_rounds.filter(pc.equal(node_rounds["node_id"], trace[-1]["node_id"]))
    times = sorted(node_rounds["ts"].to_pylist())
    during = [t for t in times if first <= t <= last]
    assert during == [r["ts"] for r in trace], "the process missed sampling rounds while alive"
    dead_by = min([t for t in times if t > last] + [trial["ended_at"]])
    assert (dead_by - last).total_seconds() <= 2.0, (last, dead_by)


def memory_controller_version() -> int | None:
    """Where this machine's memory controller is: 2 (the cgroup-v2 hierarchy at
    /sys/fs/cgroup), 1 (a v1 ``memory`` hierarchy; hybrid hosts), None (neither)."""
    root = Path("/sys/fs/cgroup")
    controllers = root / "cgroup.controllers"
    if controllers.exists() and "memory" in controllers.read_text().split():
        return 2
    return 1 if (root / "memory" / "cgroup.procs").exists() else None


@contextlib.contextmanager
def memory_cgroup(limit_bytes: int) -> Iterator[Path]:
    """A memory cgroup limited to ``limit_bytes`` (root only), removed afterwards: on
    cgroup v2 a child of the root with ``memory.max`` (and no swap); on v1 a child of
    this process's own memory cgroup with ``memory.limit_in_bytes``."""
    version = memory_controller_version()
    if not IS_ROOT or version is None:
        unavailable("needs root and a memory cgroup controller (v1 or v2)")
    name = f"memsweep-test-{os.getpid()}"
    if version == 2:
        root = Path("/sys/fs/cgroup")
        if "memory" not in (root / "cgroup.subtree_control").read_text().split():
            (root / "cgroup.subtree_control").write_text("+memory")
        group = root / name
        group.mkdir()
        limits = {"memory.max": str(limit_bytes), "memory.swap.max": "0"}
    else:
        own = next(
            (
                line.split(":", 2)[2]
                for line in Path("/proc/self/cgroup").read_text().splitlines()
                if "memory" in line.split(":")[1].split(",")
            ),
            "/",
        )
        group = Path("/sys/fs/cgroup/memory") / own.lstrip("/") / name
        group.mkdir()
        limits = {"memory.limit_in_bytes": str(limit_bytes)}
    try:
        for file, value in limits.items():
            with contextlib.suppress(FileNotFoundError):
                (group / file).write_text(value)
        yield group
    finally:
        for _ in range(50):
            with contextlib.suppress(OSError):
                group.rmdir()
                break
            time.sleep(0.1)


@pytest.mark.slow
def test_a_trial_the_kernel_oom_kills_is_recorded_oom_killed_and_the_sweep_goes_on(
    local_ray: object, tmp_path: Path, fault: Any
) -> None:
    # GIVEN two trials; one runs in a memory cgroup (v2 where the machine's memory
    # controller is there, else v1) limited to 300 MB and grows past it
    print(f"memory controller on cgroup v{memory_controller_version()}")
    with memory_cgroup(300_000_000) as memcg:
        grid, results = run_tune(
            {"name": "kernel-oom", "sampling": {"interval_s": 0.1, "flush_interval_s": 0.5}},
            tmp_path,
            {
                "mode": tune_grid(["oom", "ok"]),
                "cgroup_procs": tune_choose({"oom": str(memcg / "cgroup.procs"), "ok": ""}),
                "step_bytes": 20_000_000,
                "max_bytes": tune_choose({"oom": 2_000_000_000, "ok": 60_000_000}),
            },
        )
    trials = trials_by_mode(grid, results)
    oom, ok = trials["oom"], trials["ok"]
    # THEN the killed trial is oom_killed on the kernel log's word, naming its trainable
    assert oom["status"] == "oom_killed", oom
    assert oom["killed_role"] == "trainable" and oom["killed_node_id"]
    assert oom["kill_node_used_bytes"] > 0 and oom["kill_node_available_bytes"] > 0
    # AND the kernel's evidence is kept: the cgroup that ran out, its OOM kill count and
    # peak (memory.events + memory.peak on v2, memory.oom_control + max_usage on v1), the
    # anon RSS the kernel logged at the kill, and Ray's exit type for the vanished worker
    assert oom["kill_cgroup"].endswith(memcg.name), oom
    assert oom["kill_cgroup_oom_kills"] >= 1
    assert 200_000_000 < oom["kill_cgroup_peak_bytes"] <= 300_000_000, oom
    # (the process's anon RSS counts what it held before it moved into the cgroup: it is
    # about its last sampled RssAnon and at most a few 20 MB steps more; "about", because
    # the kernel keeps its RSS counters per CPU and both figures read them approximately:
    # one run's kill line said 0.2 MB less than the last sample)
    last_anon = trace_of(results, oom["killed_pid"])[-1]["rss_anon_bytes"]
    assert last_anon * 0.99 <= oom["kill_anon_rss_bytes"] <= last_anon + 100_000_000, oom
    assert oom["error"] == (
        f"the kernel's OOM killer killed pid {oom['killed_pid']} (trainable) in memory "
        f"cgroup {oom['kill_cgroup']}; Ray saw its worker vanish"
    )
    assert oom["ray_exit_type"] == "SYSTEM_ERROR", oom
    # AND the other trial ran to its end
    assert ok["status"] == "terminated"
    # AND the killed process's trace shows the growth, up to one period before the kill:
    # its anonymous RSS from the rest it takes inside the cgroup to its last sample, about
    # the cgroup's 300 MB (less the page cache charged to it; plus at most one 20 MB step
    # of slack for the kernel's per-CPU RSS counters). Not from the trace's first sample:
    # the worker's imports before the rest add 70-150 MB outside the cgroup (CI once saw
    # 431 MB of RSS growth that way).
    trace = trace_of(results, oom["killed_pid"])
    assert {r["trial_id"] for r in trace} == {oom["trial_id"]}
    rest = anon_at_rest(trace)
    grown = max(r["rss_anon_bytes"] for r in trace) - rest
    assert 200_000_000 < grown <= 320_000_000, (grown, rest)
    print(f"kernel OOM: trace of {len(trace)} samples, grew {grown / 1e6:.0f} MB")
    assert_trace_ends_at_the_kill(results, oom, trace)
    fault(
        "kernel_oom",
        cgroup_peak_mb=f"{oom['kill_cgroup_peak_bytes'] / 1e6:.0f}",
        cgroup_version=str(memory_controller_version()),
        anon_mb=f"{oom['kill_anon_rss_bytes'] / 1e6:.0f}",
        grown_mb=f"{grown / 1e6:.0f}",
    )


def tune_grid(values: list[Any]) -> Any:
    from ray import tune

    return tune.grid_search(values)


def tune_choose(by_mode: dict[str, Any]) -> Any:
    from ray import tune

    return tune.sample_from(lambda spec: by_mode[spec.config["mode"]])


@pytest.mark.slow
def test_a_trial_over_its_memory_budget_is_stopped_by_memsweep_and_recorded(
    local_ray: object, tmp_path: Path, fault: Any
) -> None:
    # GIVEN a 600 MB per-trial budget, checked every 0.5 s, and a trial that grows by
    # 25 MB every 0.1 s towards 3 GB, next to a small one
    budget = 600_000_000
    grid, results = run_tune(
        {
            "name": "budget",
            "resources": {"memory_budget": f"{budget}B", "budget_scope": "trial"},
            "sampling": {"interval_s": 0.1, "flush_interval_s": 0.5},
        },
        tmp_path,
        {
            "mode": tune_grid(["big", "ok"]),
            "step_bytes": 25_000_000,
            "max_bytes": tune_choose({"big": 3_000_000_000, "ok": 50_000_000}),
        },
    )
    trials = trials_by_mode(grid, results)
    big, ok = trials["big"], trials["ok"]
    # THEN memsweep stopped the big trial, with the budget and what exceeded it
    assert big["status"] == "over_budget", big
    assert big["memory_budget_bytes"] == budget
    assert big["budget_measured_bytes"] > budget
    assert "over memory_budget" in big["error"]
    # AND it stopped it soon: the trial never held more than a second's growth over
    samples = results.table("samples")
    mine = samples.filter(pc.equal(samples["trial_id"], big["trial_id"])).to_pylist()
    per_round: dict[Any, int] = {}
    for row in mine:
        per_round[row["ts"]] = per_round.get(row["ts"], 0) + row["rss_bytes"]
    assert budget < max(per_round.values()) < budget + 600_000_000
    print(
        f"over_budget: measured {big['budget_measured_bytes'] / 1e6:.0f} MB, most held {max(per_round.values()) / 1e6:.0f} MB"
    )
    # AND the sweep went on: the small trial finished
    assert ok["status"] == "terminated"
    events = results.table("events").to_pylist()
    assert [e["trial_id"] for e in events if e["kind"] == "over_budget"] == [big["trial_id"]]
    fault(
        "over_budget",
        measured_mb=f"{big['budget_measured_bytes'] / 1e6:.0f}",
        held_mb=f"{max(per_round.values()) / 1e6:.0f}",
    )


@pytest.mark.slow
def test_a_killed_sampler_is_restarted_and_the_gap_is_recorded(
    local_ray: object, tmp_path: Path, fault: Any
) -> None:
    import ray

    from memsweep.collect.sampler import SAMPLER_NAME_PREFIX

    node_id = ray.get_runtime_context().get_node_id()
    killed_at: list[float] = []

    def kill_sampler_soon() -> None:
        # 4 s after the sampler started (on a loaded machine it starts late): poll for it
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                sampler = ray.get_actor(f"{SAMPLER_NAME_PREFIX}{node_id}")
                ray.get(sampler.ping.remote(), timeout=10)
                break
            except Exception:
                time.sleep(0.2)
        time.sleep(4.0)
        killed_at.append(time.time())
        ray.kill(sampler)

    # GIVEN a trial that holds memory for ~8 s, and its node's sampler killed after 4 s
    killer = threading.Thread(target=kill_sampler_soon, daemon=True)
    killer.start()
    grid, results = run_tune(
        {"name": "sampler", "sampling": {"interval_s": 0.1, "flush_interval_s": 1.0}},
        tmp_path,
        {
            "mode": "hold",
            "step_bytes": 50_000_000,
            "max_bytes": 100_000_000,
            "rest_s": 2.0,
            "hold_s": 6.0,
        },
    )
    killer.join()
    # THEN the events say the sampler was lost, then restarted
    events = sorted(results.table("events").to_pylist(), key=lambda e: e["ts"])
    kinds = [e["kind"] for e in events if e["kind"].startswith("sampler")]
    assert kinds[:3] == ["sampler_started", "sampler_lost", "sampler_restarted"], kinds
    lost = next(e for e in events if e["kind"] == "sampler_lost")
    assert "samples since the last drain are lost" in lost["detail"]
    # AND the node's sampling rounds show one hole, around the kill, no longer than two
    # flush intervals plus the restart (as long as the events say it took: a loaded
    # machine takes longer to start the new actor), with rounds on both sides
    restarted = next(e for e in events if e["kind"] == "sampler_restarted")
    rounds = sorted(t.timestamp() for t in results.table("node_samples")["ts"].to_pylist())
    gaps = sorted((b - a, a, b) for a, b in itertools.pairwise(rounds))
    (second, _, _), (hole, before, after) = gaps[-2:]
    # the restart: from the collector's restart request to the new sampler's first round
    restart_s = after - restarted["ts"].timestamp()
    assert 0.5 < hole < 2 * 1.0 + max(restart_s, 0.0) + 1.0, (hole, restart_s)
    print(f"sampler killed: {hole:.2f} s without samples (restart took {restart_s:.2f} s)")
    # (the kill is sent just after killed_at; the sampler may finish a round before it dies)
    assert before <= killed_at[0] + 2.0 and after >= killed_at[0]
    # AND it is the only hole: every other gap is a round delayed by load, at most half as
    # long (rounds are 0.1 s apart on an idle machine)
    assert second < hole / 2, (second, hole)
    # AND the trial's process was sampled again after the restart, and the trial finished
    [result] = list(grid)
    trace = trace_of(results, result.metrics["pid"])
    assert any(r["ts"].timestamp() > after for r in trace)
    assert results.table("trials")["status"].to_pylist() == ["terminated"]
    fault("sampler_killed", hole_s=f"{hole:.1f}")


# -- against real Ray: `memsweep run` as the user runs it ------------------------------

OOM_SWEEP = {
    "name": "oom",
    "algorithm": "DQN",
    # 4 MB observations: the buffer of 5000 grows by ~0.3 GB/s here, 4 GB in 1,000 steps;
    # that of 50 stays small. The big one runs first: memory is back to normal for the
    # small one.
    "env": {
        "id": "memsweep/Synthetic-v0",
        "obs_shape": [1_000_000],
        "obs_dtype": "float32",
        "episode_len": 10,
    },
    "factors": {
        "replay_capacity": [5000, 50],
        "model": ["16"],
        "num_workers": [0],
        "framework": ["torch"],
    },
    "stop": {"env_steps": 1000, "seconds": 60},
    "training": {"learning_starts": 10**9},
    "sampling": {"interval_s": 0.1, "flush_interval_s": 1.0},
}

FAKE_SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIAMEMSWEEPFAKE0001",
    "AWS_SECRET_ACCESS_KEY": "memsweep-fake-aws-secret-6f1c2e",
    "MEMSWEEP_TEST_PASSWORD": "memsweep-fake-password-93ab",
}
FAKE_TOKEN_FILE = "memsweep-fake-ray-token-file-5d0e7a"


def secrets_found(root: Path, *texts: str) -> list[str]:
    """Which fake secrets appear in any file under root or in the given texts."""
    needles = [*FAKE_SECRETS.values(), FAKE_TOKEN_FILE]
    blobs = [t.encode() for t in texts]
    blobs += [p.read_bytes() for p in root.rglob("*") if p.is_file()]
    return [n for n in needles if any(n.encode() in blob for blob in blobs)]


def ray_session_dir(pid: int) -> Path | None:
    """The session folder (logs, sockets) of the Ray that pid started, from its raylet's argv."""
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(pid).children(recursive=True):
            for arg in child.cmdline() if child.name() == "raylet" else []:
                if arg.startswith("--raylet_socket_name=") and "/session_" in arg:
                    return Path(arg.split("=", 1)[1]).parents[1]
    return None


def listening_addresses(pid: int) -> set[tuple[str, str]]:
    """(process name, address) of every listening TCP socket of pid and its descendants."""
    try:
        root = psutil.Process(pid)
        pids = {pid} | {p.pid for p in root.children(recursive=True)}
    except psutil.Error:
        return set()
    found = set()
    for conn in psutil.net_connections(kind="inet"):
        if conn.status == psutil.CONN_LISTEN and conn.pid in pids:
            with contextlib.suppress(psutil.Error):
                found.add((psutil.Process(conn.pid).name(), conn.laddr.ip))
    return found


LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


@pytest.mark.slow
@pytest.mark.solo
def test_an_oom_killed_trial_is_data_and_the_sweep_finishes_on_a_loopback_only_ray(
    tmp_path: Path, fault: Any
) -> None:
    # GIVEN a sweep over replay capacity where the big buffer outgrows the node: Ray's
    # memory monitor kills at 2.5 GB above what this machine uses now (checked every
    # 100 ms), and an environment holding credentials that must go nowhere
    vm = psutil.virtual_memory()
    threshold = (vm.total - vm.available + 2.5e9) / vm.total
    storage = tmp_path / "results"
    sweep = tmp_path / "oom.yaml"
    sweep.write_text(yaml.safe_dump({**OOM_SWEEP, "storage": str(storage)}))
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text(FAKE_TOKEN_FILE + "\n")
    env = {
        **os.environ,
        **FAKE_SECRETS,
        "HOME": str(home),
        "RAY_memory_usage_threshold": f"{threshold:.4f}",
        "RAY_memory_monitor_refresh_ms": "100",
    }
    env.pop("RAY_ADDRESS", None)
    env.pop("RAY_AUTH_TOKEN", None)
    # WHEN the user runs it (and we watch what its processes listen on)
    proc = subprocess.Popen(
        [sys.executable, "-m", "memsweep", "run", str(sweep)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    listening: set[tuple[str, str]] = set()
    sessions: set[Path] = set()
    watcher_done = threading.Event()

    def watch() -> None:
        while not watcher_done.wait(1.0):
            listening.update(listening_addresses(proc.pid))
            session = ray_session_dir(proc.pid)
            if session is not None:
                sessions.add(session)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        stdout, stderr = proc.communicate(timeout=900)
    finally:
        watcher_done.set()
        watcher.join()
        if proc.poll() is None:
            proc.kill()
    # THEN it exits 1 (a trial failed) after running both trials, and the summary says
    # which one the OOM killer took
    assert proc.returncode == 1, stderr[-4000:]
    assert "Caught unexpected exception" not in stderr
    assert "oom: 2 trials, 1 failed" in stdout, stdout[-3000:]
    trials = {
        row["replay_capacity"]: row for row in open_results(storage).table("trials").to_pylist()
    }
    small, big = trials[50], trials[5000]
    assert small["status"] == "terminated", small
    assert big["status"] == "oom_killed", big
    summary = {
        line.split()[1]: line
        for line in stdout.splitlines()
        if line.startswith(big["trial_id"][:5])
    }
    assert "oom_killed" in summary["5000"] and "terminated" in summary["50"]
    # AND the trials table names the killed process, its role and node, and Ray's
    # reading of the node's memory at the kill
    assert big["killed_role"] == "trainable"
    assert big["kill_node_used_bytes"] >= threshold * vm.total * 0.99
    assert big["kill_node_available_bytes"] > 0
    assert "Ray's memory monitor killed pid" in big["error"]
    # AND Ray's own word is kept: the worker's exit type in its worker table, and its kill
    # report's table of the node's top memory users, the killed trainable selected in it
    assert big["ray_exit_type"] == "NODE_OUT_OF_MEMORY", big
    assert "killed due to the node running low on memory" in big["ray_exit_detail"]
    users = json.loads(big["kill_memory_users_json"])
    print(f"Ray's kill report: {users}")
    # (Ray may select more than one worker in one kill report; the trial's is among them)
    selected = {u["pid"]: u for u in users if u["selected"]}
    killed = selected[big["killed_pid"]]
    assert killed["memory_bytes"] > 1.0e9, users
    assert len(users) > 1 and all(u["memory_bytes"] >= 0 and u["command"] for u in users)
    results = open_results(storage)
    # AND every node round carries its cgroup's OOM counters and, where the kernel has
    # PSI, the memory pressure (cumulative stall time never goes back)
    rounds = results.table("node_samples").sort_by("ts").to_pylist()
    if probe.counters_dir(os.getpid()) is not None:
        assert all(r["cgroup_oom_kills"] is not None for r in rounds)
    if Path("/proc/pressure/memory").exists():
        stalls = [r["memory_pressure_some_total_us"] for r in rounds]
        assert None not in stalls and stalls == sorted(stalls)
    trace = trace_of(results, big["killed_pid"])
    assert {(r["trial_id"], r["role"]) for r in trace if r["trial_id"]} == {
        (big["trial_id"], "trainable")
    }
    # AND its trace shows the buffer's growth up to one sampling period before the kill
    assert max(r["rss_bytes"] for r in trace) - min(r["rss_bytes"] for r in trace) > 1.0e9
    assert_trace_ends_at_the_kill(results, big, trace)
    grown = max(r["rss_bytes"] for r in trace) - min(r["rss_bytes"] for r in trace)
    print(
        f"Ray OOM: trace of {len(trace)} samples, grew {grown / 1e9:.2f} GB, node at {big['kill_node_used_bytes'] / 1e9:.2f} GB"
    )
    # AND every process of the embedded Ray listened on loopback only
    assert listening, "no listening socket seen"
    exposed = {(name, ip) for name, ip in listening if ip not in LOOPBACK}
    assert exposed == set(), exposed
    # AND no credential reached the results folder (Parquet, Tune's files), stdout,
    # stderr, or the logs of the Ray that memsweep started
    assert secrets_found(storage, stdout, stderr) == []
    [session] = sessions
    assert secrets_found(session / "logs") == []
    versions = json.loads((storage / "versions.json").read_text())
    assert set(versions) == {
        "schema_version",
        "created",
        "python",
        "platform",
        "machine",
        "hostname",
        "cpus",
        "memory_bytes",
        "packages",
    }
    fault(
        "ray_oom",
        killed_gb=f"{killed['memory_bytes'] / 1e9:.2f}",
        grown_gb=f"{grown / 1e9:.2f}",
        trace_samples=str(len(trace)),
    )
    fault("credentials")
    fault("loopback")


def sweep_file(tmp_path: Path, name: str, storage: Path, **overrides: Any) -> Path:
    """A small CartPole DQN sweep of two trials (~15 s each on 2 cores)."""
    data = {
        "name": name,
        "algorithm": "DQN",
        "env": "CartPole-v1",
        "factors": {
            "replay_capacity": [1000, 2000],
            "model": ["16"],
            "num_workers": [0],
            "framework": ["torch"],
        },
        "stop": {"iterations": 3},
        "training": {"learning_starts": 200},
        "sampling": {"interval_s": 0.1, "flush_interval_s": 1.0},
        "storage": str(storage),
        **overrides,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def wait_for(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        with contextlib.suppress(Exception):
            if condition():
                return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def statuses(storage: Path) -> list[str]:
    return pq.read_table(storage / "trials.parquet").column("status").to_pylist()


def sigkill_tree(proc: subprocess.Popen[str]) -> float:
    """SIGKILL the driver; then, by pid, whatever it started that outlives it (Ray's
    agents do). Returns the time of the kill."""
    children = psutil.Process(proc.pid).children(recursive=True)
    killed_at = time.time()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    _, alive = psutil.wait_procs(children, timeout=10)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()
    psutil.wait_procs(alive, timeout=10)
    return killed_at


@pytest.mark.slow
def test_a_sigkilled_driver_loses_at_most_one_flush_and_resume_and_analyze_work(
    tmp_path: Path, fault: Any
) -> None:
    storage = tmp_path / "results"
    sweep = sweep_file(
        tmp_path,
        "killed",
        storage,
        factors={
            "replay_capacity": [1000, 2000, 3000],
            "model": ["16"],
            "num_workers": [0],
            "framework": ["torch"],
        },
        stop={"iterations": 2},
    )
    env = {**os.environ, **FAKE_SECRETS}
    env.pop("RAY_ADDRESS", None)
    # GIVEN a three-trial sweep on an embedded Ray, one trial finished and another
    # running and being sampled
    proc = subprocess.Popen(
        [sys.executable, "-m", "memsweep", "run", str(sweep)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        finished: set[str] = set()

        def one_finished_and_another_running() -> bool:
            finished.clear()
            finished.update(t for t, s in trial_statuses(storage).items() if s == "terminated")
            return bool(finished) and bool(trials_with_progress(storage) - finished)

        wait_for(one_finished_and_another_running, 400, "a trial to finish and the next to run")
    finally:
        # WHEN the driver is SIGKILLed (flushes land every second: some kills hit a write)
        killed_at = sigkill_tree(proc)
    # THEN every Parquet file left is readable, and the samples reach to within one
    # flush interval (1 s) of the kill, plus the time a flush takes
    assert every_parquet_file_reads(storage) > 3
    results = open_results(storage)
    samples = results.table("samples", columns=["ts", "trial_id", "run_id"])
    lost_s = killed_at - max(samples["ts"].to_pylist()).timestamp()
    assert lost_s < 1.0 + 1.0, lost_s
    assert statuses(storage).count("running") == 1
    first_run = set(samples["run_id"].to_pylist())
    rows_of_finished = {
        trial: samples.filter(pc.equal(samples["trial_id"], trial)).num_rows for trial in finished
    }
    # AND `memsweep run --resume` finishes the sweep in the same folder
    resumed = memsweep("run", sweep, "--resume", cwd=tmp_path, env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert statuses(storage) == ["terminated"] * 3
    results = open_results(storage)
    trials = results.table("trials").to_pylist()
    # (the trials table holds each trial exactly once)
    assert Counter(t["trial_id"] for t in trials) == Counter({t["trial_id"]: 1 for t in trials})
    # (nothing of the killed run was rewritten: its samples are still there)
    samples = results.table("samples")
    assert first_run < set(samples["run_id"].to_pylist())
    # (a trial that had finished was not rerun: same attempt, same rows, no more)
    run_of = {t["trial_id"]: t["run_id"] for t in trials}
    progress = results.table("progress")
    for trial in finished:
        mine = samples.filter(pc.equal(samples["trial_id"], trial))
        assert mine.num_rows == rows_of_finished[trial]
        assert set(mine["run_id"].to_pylist()) == {run_of[trial]}
        iterations = progress.filter(pc.equal(progress["trial_id"], trial))["iteration"]
        assert sorted(iterations.to_pylist()) == [1, 2]
    # (the interrupted trial and any not started ran in the resumed driver)
    resumed_runs = {run_of[t] for t in run_of if t not in finished}
    assert len(resumed_runs) == 1 and resumed_runs.isdisjoint({run_of[t] for t in finished})
    # (keeping each trial's latest attempt leaves no sample twice)
    latest = latest_attempts(samples, results.table("trials"))
    keys = Counter(
        zip(
            latest["node_id"].to_pylist(),
            latest["pid"].to_pylist(),
            latest["ts"].to_pylist(),
            strict=True,
        )
    )
    assert max(keys.values()) == 1
    assert set(pc.unique(latest["trial_id"].drop_null()).to_pylist()) == set(run_of)
    # AND the analysis reads it all
    started = time.time()
    analysis = subprocess.run(
        [
            sys.executable,
            "-m",
            "memsweep.analyze",
            str(storage),
            "--out",
            str(tmp_path / "analysis"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert analysis.returncode == 0, analysis.stderr[-3000:]
    assert "Traceback" not in analysis.stderr
    print(f"lost {lost_s:.2f} s of samples; analysis took {time.time() - started:.0f} s")
    assert secrets_found(storage, resumed.stdout, resumed.stderr) == []
    fault("driver_sigkill", lost_s=f"{lost_s:.2f}")
    fault("credentials")


@pytest.mark.slow
@pytest.mark.skipif(not IS_ROOT, reason="mounting a tmpfs needs root")
def test_a_results_disk_that_fills_up_stops_the_sweep_with_one_line(
    tmp_path: Path, fault: Any
) -> None:
    # GIVEN a sweep whose results go to a 512 KiB disk (it fills within a trial)
    with tmpfs(tmp_path / "small", "512k") as disk:
        storage = disk / "results"
        sweep = sweep_file(tmp_path, "full", storage, stop={"iterations": 20, "seconds": 60})
        # WHEN the user runs it
        result = memsweep("run", sweep, cwd=tmp_path, timeout=400)
        # THEN it stops early, with no traceback, and says why and what to do, last
        assert result.returncode == 3, result.stderr[-3000:]
        assert "Traceback" not in result.stderr
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("memsweep: Cannot write ") and "No space left on device" in last
        assert "--storage" in last
        # AND the second trial never started; what is on the disk is readable: the
        # samples up to the moment the disk filled, the trials table as last written
        assert every_parquet_file_reads(storage) > 3
        results = open_results(storage)
        assert results.table("samples").num_rows > 0
        assert statuses(storage) == ["running"]
        print(f"full disk: {results.table('samples').num_rows} sample rows kept")
        fault("disk_full", rows=f"{results.table('samples').num_rows:,}")


def test_the_budget_counts_a_shared_object_once_through_pss() -> None:
    # GIVEN a trial of three processes that each map the same 600 MB object: each RSS
    # shows 700 MB, each PSS 300 MB (100 MB own + a third of the object)
    n = 3
    columns: dict[str, Any] = {name: [None] * n for name in SAMPLES.names}
    columns.update(
        ts=[1] * n,
        node_id=["n1"] * n,
        pid=[10, 11, 12],
        trial_id=["shared"] * n,
        role=["trainable", "child", "child"],
        rss_bytes=[700_000_000] * n,
        pss_bytes=[300_000_000] * n,
    )
    table = pa.Table.from_pydict(columns, schema=SAMPLES)
    # THEN a 1 GB budget holds (Σ PSS 900 MB; Σ RSS would be 2.1 GB)
    assert over_budget(table, {}, MemoryBudget(1_000_000_000)) == []
    # AND an 800 MB one is crossed, by the Σ PSS figure, named as such
    [breach] = over_budget(table, {}, MemoryBudget(800_000_000))
    assert breach.measured_bytes == 900_000_000
    assert "900 MB (Σ PSS)" in breach.detail

"""The results-folder contract: table schemas, with units, and the folder layout.

A sweep's results folder (a local path or any ``pyarrow.fs`` URI such as
``s3://bucket/prefix``) holds::

    study.yaml            the sweep file as validated (with defaults filled in)
    versions.json         package versions and machine facts that produced the data
    trials.parquet        one row per trial: factors, what RLlib built, status, error
    nodes.parquet         one row per Ray node seen during the sweep
    samples/part-*.parquet       one row per process per sample (see SAMPLES)
    node_samples/part-*.parquet  one row per node per sample (see NODE_SAMPLES)
    progress/part-*.parquet      one row per Tune result (env steps, replay size)
    events/part-*.parquet        sampler starts and restarts, gaps, nodes joining/leaving

An appended table's folder holds one ``part-*.parquet`` per flush until the sweep ends;
then :mod:`memsweep.store.compact` merges them into ``compact-*.parquet`` files.
Read the folder's ``*.parquet`` (every tool does by default).

Writing: :mod:`memsweep.store.writer`; reading: :mod:`memsweep.store.reader`.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = 1
"""Bumped when a column changes meaning; readers refuse a newer version."""

TS = pa.timestamp("us", tz="UTC")

SAMPLES = pa.schema(
    [
        pa.field("ts", TS, nullable=False, metadata={"doc": "sample time, UTC"}),
        pa.field(
            "run_id",
            pa.string(),
            metadata={"doc": "the driver run that wrote the row; a resumed sweep has a new one"},
        ),
        pa.field("node_id", pa.string(), nullable=False, metadata={"doc": "Ray node id (hex)"}),
        pa.field("pid", pa.int32(), nullable=False, metadata={"doc": "process id on its node"}),
        pa.field("ppid", pa.int32(), metadata={"doc": "parent process id"}),
        pa.field(
            "create_time",
            pa.float64(),
            metadata={"doc": "process start, epoch s; with pid, a process's identity"},
        ),
        pa.field(
            "name",
            pa.string(),
            metadata={"doc": "process title (ray::ClassName.method for Ray workers)"},
        ),
        pa.field(
            "trial_id",
            pa.string(),
            metadata={"doc": "Tune trial id; null for processes of no trial"},
        ),
        pa.field(
            "role",
            pa.string(),
            nullable=False,
            metadata={
                "doc": "trainable, env_runner, learner, aggregator, replay, actor, child (of a trial's actor), ray_worker (idle or task worker), ray_system, driver, memsweep"
            },
        ),
        pa.field(
            "actor_id",
            pa.string(),
            metadata={
                "doc": "Ray actor in this process (or its nearest actor ancestor for role child)"
            },
        ),
        pa.field(
            "actor_class",
            pa.string(),
            metadata={"doc": "that actor's class, e.g. SingleAgentEnvRunner"},
        ),
        pa.field("rss_bytes", pa.int64(), metadata={"doc": "resident set size (VmRSS)"}),
        pa.field(
            "hwm_bytes",
            pa.int64(),
            metadata={
                "doc": "peak RSS since process start (VmHWM): catches spikes between samples"
            },
        ),
        pa.field("swap_bytes", pa.int64(), metadata={"doc": "VmSwap"}),
        pa.field(
            "rss_anon_bytes", pa.int64(), metadata={"doc": "RssAnon: private heap/stack pages"}
        ),
        pa.field(
            "rss_file_bytes",
            pa.int64(),
            metadata={"doc": "RssFile: mapped files, shared libraries"},
        ),
        pa.field(
            "rss_shmem_bytes",
            pa.int64(),
            metadata={"doc": "RssShmem: shared memory, incl. Ray's object store"},
        ),
        pa.field(
            "uss_bytes",
            pa.int64(),
            metadata={
                "doc": "unique set size; every full_interval_s, else null: read from "
                "smaps_rollup when wanted (pages moved, processes started or ended, "
                "pss_max_age_s) within pss_cpu_share of a core, in between the last read "
                "plus the change in RssAnon"
            },
        ),
        pa.field(
            "pss_bytes",
            pa.int64(),
            metadata={
                "doc": "proportional set size: shared pages split between sharers; "
                "read like uss_bytes"
            },
        ),
        pa.field(
            "gpu_bytes",
            pa.int64(),
            metadata={"doc": "GPU memory used by the process (NVML); null without NVML"},
        ),
        pa.field(
            "cpu_time_s",
            pa.float64(),
            metadata={
                "doc": "user + system CPU seconds since start; every full_interval_s, else null"
            },
        ),
    ]
)

NODE_SAMPLES = pa.schema(
    [
        pa.field("ts", TS, nullable=False),
        pa.field("node_id", pa.string(), nullable=False),
        pa.field("total_bytes", pa.int64(), metadata={"doc": "MemTotal"}),
        pa.field("available_bytes", pa.int64(), metadata={"doc": "MemAvailable"}),
        pa.field("used_bytes", pa.int64(), metadata={"doc": "total − available"}),
        pa.field(
            "shmem_bytes",
            pa.int64(),
            metadata={
                "doc": "Shmem: tmpfs and shared memory, incl. Ray's object store in /dev/shm"
            },
        ),
        pa.field("swap_used_bytes", pa.int64()),
        pa.field(
            "cgroup_limit_bytes",
            pa.int64(),
            metadata={"doc": "memory.max of Ray's cgroup; null when unlimited or no cgroup"},
        ),
        pa.field(
            "cgroup_usage_bytes", pa.int64(), metadata={"doc": "memory.current of Ray's cgroup"}
        ),
        pa.field(
            "gpu_used_bytes",
            pa.int64(),
            metadata={"doc": "sum over GPUs (NVML); null without NVML"},
        ),
        pa.field(
            "cgroup_oom_kills",
            pa.int64(),
            metadata={
                "doc": "OOM kills so far in Ray's cgroup: memory.events oom_kill (cgroup v2) or memory.oom_control oom_kill (v1); null without a memory cgroup"
            },
        ),
        pa.field(
            "cgroup_oom_events",
            pa.int64(),
            metadata={"doc": "memory.events oom (v2): times that cgroup ran out; null on v1"},
        ),
        pa.field(
            "cgroup_max_events",
            pa.int64(),
            metadata={
                "doc": "memory.events max (v2) or memory.failcnt (v1): times its usage hit the limit"
            },
        ),
        pa.field(
            "memory_pressure_some_avg10",
            pa.float64(),
            metadata={
                "doc": "PSI: % of the last 10 s some task stalled on memory (Ray's cgroup's memory.pressure on cgroup v2, else /proc/pressure/memory); null where the kernel has no PSI"
            },
        ),
        pa.field(
            "memory_pressure_full_avg10",
            pa.float64(),
            metadata={"doc": "PSI: % of the last 10 s every non-idle task stalled on memory"},
        ),
        pa.field(
            "memory_pressure_some_total_us",
            pa.int64(),
            metadata={
                "doc": "PSI: cumulative some-stall time, µs (differences give an interval's)"
            },
        ),
        pa.field(
            "memory_pressure_full_total_us",
            pa.int64(),
            metadata={"doc": "PSI: cumulative full-stall time, µs"},
        ),
        pa.field("num_processes", pa.int32(), metadata={"doc": "processes sampled in this round"}),
        pa.field(
            "sample_cost_s", pa.float64(), metadata={"doc": "wall time this sampling round took"}
        ),
    ]
)

PROGRESS = pa.schema(
    [
        pa.field("ts", TS, nullable=False),
        pa.field("trial_id", pa.string(), nullable=False),
        pa.field(
            "run_id",
            pa.string(),
            metadata={"doc": "the driver run that wrote the row; a resumed sweep has a new one"},
        ),
        pa.field("iteration", pa.int64()),
        pa.field(
            "env_steps", pa.int64(), metadata={"doc": "env steps sampled over the trial's lifetime"}
        ),
        pa.field(
            "replay_size",
            pa.int64(),
            metadata={"doc": "transitions stored in the replay buffer; null if unknown"},
        ),
        pa.field("time_total_s", pa.float64()),
        pa.field(
            "trial_rss_bytes",
            pa.int64(),
            metadata={"doc": "RSS summed over the trial's processes at this result"},
        ),
        pa.field(
            "trial_peak_bytes",
            pa.int64(),
            metadata={
                "doc": "the trial's peak so far: the largest PSS summed over its processes at any result (in results written before this column meant PSS, VmHWM summed)"
            },
        ),
    ]
)

EVENTS = pa.schema(
    [
        pa.field("ts", TS, nullable=False),
        pa.field(
            "kind",
            pa.string(),
            nullable=False,
            metadata={
                "doc": "sampler_started, sampler_restarted, sampler_lost, gap, node_added, node_removed, trial_started, trial_registered, trial_ended, over_budget (memsweep stopped the trial)"
            },
        ),
        pa.field("node_id", pa.string()),
        pa.field("trial_id", pa.string()),
        pa.field("detail", pa.string()),
    ]
)

TRIALS = pa.schema(
    [
        pa.field("trial_id", pa.string(), nullable=False),
        pa.field("study", pa.string()),
        pa.field("algorithm", pa.string()),
        pa.field("env", pa.string()),
        pa.field("api_stack", pa.string(), metadata={"doc": "RLlib API stack: new or old"}),
        pa.field("replay_capacity", pa.int64()),
        pa.field("model", pa.string(), metadata={"doc": "model label, e.g. 256x256"}),
        pa.field("num_workers", pa.int64()),
        pa.field("framework", pa.string(), metadata={"doc": "torch, tf2 (traced) or tf2-eager"}),
        pa.field("repeat", pa.int64()),
        pa.field("seed", pa.int64()),
        pa.field("cpus_per_trainable", pa.float64()),
        pa.field(
            "cpus_per_env_runner",
            pa.float64(),
            metadata={"doc": "fractional CPU share given to each env runner"},
        ),
        pa.field(
            "model_params", pa.int64(), metadata={"doc": "parameters of the built model (one copy)"}
        ),
        pa.field("obs_bytes", pa.int64(), metadata={"doc": "bytes of one observation as stored"}),
        pa.field(
            "built_replay_capacity",
            pa.int64(),
            metadata={"doc": "capacity of the replay buffer RLlib built"},
        ),
        pa.field(
            "built_num_env_runners", pa.int64(), metadata={"doc": "remote env runners RLlib built"}
        ),
        pa.field("placement_group_id", pa.string()),
        pa.field(
            "run_id",
            pa.string(),
            metadata={
                "doc": "the driver run of the trial's latest attempt: samples of earlier attempts (before a resume) have another run_id"
            },
        ),
        pa.field(
            "status",
            pa.string(),
            metadata={
                "doc": "running, terminated, error, interrupted, oom_killed (Ray's memory monitor, or the kernel's OOM killer per the node's kernel log), over_budget (memsweep's resources.memory_budget)"
            },
        ),
        pa.field("error", pa.string()),
        pa.field("started_at", TS),
        pa.field("ended_at", TS),
        pa.field("iterations", pa.int64()),
        pa.field("env_steps", pa.int64()),
        pa.field(
            "stop_reason",
            pa.string(),
            metadata={
                "doc": "terminated trials: the stop limit reached first: plateau (stop.plateau_env_steps after the buffer filled), env_steps, iterations, or time_cap (stop.seconds, the guard: the plateau was not reached); null otherwise"
            },
        ),
        pa.field(
            "hwm_bytes",
            pa.int64(),
            metadata={
                "doc": "VmHWM summed over the trial's processes at its last result: spikes between samples show, shared pages count once per process"
            },
        ),
        pa.field(
            "peak_bytes",
            pa.int64(),
            metadata={
                "doc": "the trial's peak seen in its results: the largest sum of PSS of its processes (shared pages once; memsweep.store.peaks)"
            },
        ),
        pa.field(
            "killed_pid",
            pa.int64(),
            metadata={
                "doc": "the trial's process that was killed (oom_killed) or died (error); null otherwise"
            },
        ),
        pa.field(
            "killed_role",
            pa.string(),
            metadata={"doc": "that process's role in samples (trainable, env_runner, …)"},
        ),
        pa.field("killed_node_id", pa.string(), metadata={"doc": "that process's node"}),
        pa.field(
            "kill_node_used_bytes",
            pa.int64(),
            metadata={
                "doc": "used memory of that node at the kill: Ray's own reading when Ray's memory monitor killed it, else memsweep's last node sample before the kill; null for over_budget (see budget_measured_bytes)"
            },
        ),
        pa.field(
            "kill_node_available_bytes",
            pa.int64(),
            metadata={
                "doc": "the node's memory left at the kill (Ray's limit − used, or MemAvailable)"
            },
        ),
        pa.field(
            "ray_exit_type",
            pa.string(),
            metadata={
                "doc": "the killed process's exit type in Ray's GCS worker table (what ray.util.state.list_workers(detail=True) shows): NODE_OUT_OF_MEMORY when Ray's memory monitor killed it, SYSTEM_ERROR for a worker that vanished (SIGKILL); null when the killed process was no Ray worker or the table had no row for it"
            },
        ),
        pa.field(
            "ray_exit_detail",
            pa.string(),
            metadata={"doc": "that row's exit detail: Ray's own text about the exit"},
        ),
        pa.field(
            "kill_memory_users_json",
            pa.string(),
            metadata={
                "doc": "Ray's kill report (Ray >= 2.56): JSON list of the node's top memory users at the kill, {pid, memory_bytes (Ray's GB to 2 decimals), command, selected (Ray chose it to kill)}; null without a report"
            },
        ),
        pa.field(
            "kill_cgroup",
            pa.string(),
            metadata={
                "doc": "kernel OOM kills: the memory cgroup that ran out (oom_memcg in the kernel log; / for the whole machine)"
            },
        ),
        pa.field(
            "kill_cgroup_oom_kills",
            pa.int64(),
            metadata={
                "doc": "that cgroup's OOM kill count after the kill: cgroup v2 memory.events oom_kill, v1 memory.oom_control oom_kill"
            },
        ),
        pa.field(
            "kill_cgroup_peak_bytes",
            pa.int64(),
            metadata={
                "doc": "that cgroup's peak usage: cgroup v2 memory.peak, v1 memory.max_usage_in_bytes"
            },
        ),
        pa.field(
            "kill_anon_rss_bytes",
            pa.int64(),
            metadata={"doc": "the killed process's anon RSS as the kernel logged it at the kill"},
        ),
        pa.field(
            "memory_budget_bytes",
            pa.int64(),
            metadata={
                "doc": "resources.memory_budget when memsweep stopped the trial (over_budget)"
            },
        ),
        pa.field(
            "budget_measured_bytes",
            pa.int64(),
            metadata={
                "doc": "what exceeded it: the trial's summed PSS (budget_scope trial) or its node's used memory (node)"
            },
        ),
        pa.field(
            "factors_json",
            pa.string(),
            metadata={
                "doc": "JSON object: factor name → this trial's value, for every factor of the trial (built-ins: replay_capacity, model, num_workers, framework; any other by its dotted config key, e.g. train_batch_size_per_learner, env_config.size); numbers as JSON numbers, the rest as strings. For a Tuner of the user's own: the config keys whose values differ between its trials"
            },
        ),
        pa.field(
            "config_json",
            pa.string(),
            metadata={
                "doc": "JSON object: the trial's whole Tune config flattened to dotted keys (trials of a Tuner of the user's own; null for memsweep's own trainable, whose sweep is in study.yaml)"
            },
        ),
    ]
)

NODES = pa.schema(
    [
        pa.field("node_id", pa.string(), nullable=False),
        pa.field("hostname", pa.string()),
        pa.field("ip", pa.string()),
        pa.field("is_head", pa.bool_()),
        pa.field("total_bytes", pa.int64()),
        pa.field("first_seen", TS),
        pa.field("last_seen", TS),
        pa.field("state", pa.string(), metadata={"doc": "alive or dead"}),
    ]
)

APPEND_TABLES: dict[str, pa.Schema] = {
    "samples": SAMPLES,
    "node_samples": NODE_SAMPLES,
    "progress": PROGRESS,
    "events": EVENTS,
}
WHOLE_TABLES: dict[str, pa.Schema] = {"trials": TRIALS, "nodes": NODES}


def _unit(name: str) -> str:
    if name.endswith("_bytes"):
        return "bytes"
    if name.endswith("_s"):
        return "seconds"
    if name in {"ts", "first_seen", "last_seen", "started_at", "ended_at"}:
        return "UTC, µs"
    return ""


def schema_markdown() -> str:
    """The schema of every table as Markdown (``docs/schema.md`` is this, checked by a test)."""
    lines = [
        "# Results schema",
        "",
        "Generated from `memsweep.store` (`python -c 'import memsweep.store as s; print(s.schema_markdown())'`);",
        f"schema version {SCHEMA_VERSION}. Appended tables are folders of Parquet files (one",
        "`part-*` per flush, merged into `compact-*` files when the sweep ends: read `*.parquet`);",
        "`trials` and `nodes` are single files, replaced whole.",
        "",
    ]
    for name, schema in {**APPEND_TABLES, **WHOLE_TABLES}.items():
        where = f"`{name}/*.parquet`" if name in APPEND_TABLES else f"`{name}.parquet`"
        lines += [
            f"## {name} — {where}",
            "",
            "| column | type | unit | meaning |",
            "| --- | --- | --- | --- |",
        ]
        for field in schema:
            doc = (field.metadata or {}).get(b"doc", b"").decode()
            lines.append(f"| `{field.name}` | {field.type} | {_unit(field.name)} | {doc} |")
        lines.append("")
    return "\n".join(lines)

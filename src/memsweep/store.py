"""Parquet schema, writer and reader for a sweep's results.

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

**Crash safety.** Every part file is written under a name starting with ``.`` and then
renamed, so a file with a final name is always complete; readers (pyarrow, pandas,
polars, duckdb with ``*.parquet``) skip the hidden temporaries. On object stores a PUT
is already atomic. Appending never rewrites a file; ``trials.parquet`` and
``nodes.parquet`` are small and replaced whole, atomically.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from memsweep.errors import DataError

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
            metadata={"doc": "unique set size; sampled every full_interval_s, else null"},
        ),
        pa.field(
            "pss_bytes",
            pa.int64(),
            metadata={"doc": "proportional set size; shared pages split between sharers"},
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
            metadata={"doc": "VmHWM summed over the trial's processes"},
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
            "peak_bytes",
            pa.int64(),
            metadata={"doc": "peak trial memory seen in results (sum of VmHWM)"},
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
                "doc": "what exceeded it: the trial's summed RSS (budget_scope trial) or its node's used memory (node)"
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


def resolve(uri: str | os.PathLike[str]) -> tuple[pafs.FileSystem, str]:
    """A results location → (filesystem, path in it). Plain paths are local."""
    text = os.fspath(uri)
    if "://" in text:
        try:
            return pafs.FileSystem.from_uri(text)  # type: ignore[no-any-return]
        except (pa.ArrowInvalid, OSError, ValueError) as exc:
            raise DataError(f"Cannot open storage {text!r}: {exc}") from None
    return pafs.LocalFileSystem(), str(Path(text).resolve())


def _is_local(fs: pafs.FileSystem) -> bool:
    return isinstance(fs, pafs.LocalFileSystem)


def to_table(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """Rows (dicts) → a table of ``schema``; missing keys become nulls."""
    columns = {name: [row.get(name) for row in rows] for name in schema.names}
    return pa.Table.from_pydict(columns, schema=schema)


class ResultsWriter:
    """Writes a sweep's tables. Thread-safe; each call leaves only complete files.

    **Ownership.** One writer per sweep driver. Part files carry a per-writer random token
    so that a resumed driver never overwrites an earlier one's files.
    """

    def __init__(self, uri: str | os.PathLike[str]) -> None:
        self.uri = os.fspath(uri)
        self.fs, self.root = resolve(self.uri)
        self._token = uuid.uuid4().hex[:8]
        self.run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{self._token}"
        self._seq = itertools.count()
        self._lock = threading.Lock()
        try:
            self.fs.create_dir(self.root, recursive=True)
            for name in APPEND_TABLES:
                self.fs.create_dir(f"{self.root}/{name}", recursive=True)
        except OSError as exc:
            raise DataError(
                f"Cannot create the results folder {self.uri}: {exc}. "
                "Choose a writable 'storage' in the sweep file or free some space."
            ) from None

    def _atomic_write(self, final: str, write: Any) -> None:
        try:
            if not _is_local(self.fs):
                write(final)
                return
            directory, base = final.rsplit("/", 1)
            tmp = f"{directory}/.{base}.{self._token}.tmp"
            try:
                write(tmp)
                Path(tmp).replace(final)
            except BaseException:
                with contextlib.suppress(OSError):
                    Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            # A full disk, a folder made read-only or removed: say so in one line.
            reason = _reason(exc)
            raise DataError(
                f"Cannot write {final}: {reason}. Free space there or choose another "
                "'storage' (--storage)."
            ) from None

    def append(self, table_name: str, table: pa.Table) -> str | None:
        """Add ``table`` as a new part file of ``table_name``; returns its path."""
        if table.num_rows == 0:
            return None
        schema = APPEND_TABLES[table_name]
        table = table.cast(schema) if table.schema != schema else table
        with self._lock:
            seq = next(self._seq)
        name = f"part-{time.time_ns():020d}-{self._token}-{seq:06d}.parquet"
        final = f"{self.root}/{table_name}/{name}"
        self._atomic_write(
            final, lambda path: pq.write_table(table, path, filesystem=self.fs, compression="zstd")
        )
        return final

    def append_rows(self, table_name: str, rows: list[dict[str, Any]]) -> str | None:
        return self.append(table_name, to_table(rows, APPEND_TABLES[table_name]))

    def replace(self, table_name: str, rows: list[dict[str, Any]]) -> None:
        """Replace a small whole table (``trials`` or ``nodes``) atomically."""
        table = to_table(rows, WHOLE_TABLES[table_name])
        with self._lock:
            self._atomic_write(
                f"{self.root}/{table_name}.parquet",
                lambda path: pq.write_table(table, path, filesystem=self.fs),
            )

    def write_text(self, name: str, text: str) -> None:
        """A small text file (study.yaml, versions.json) in the results root."""
        data = text.encode("utf-8")

        def write(path: str) -> None:
            with self.fs.open_output_stream(path) as out:
                out.write(data)

        with self._lock:
            self._atomic_write(f"{self.root}/{name}", write)


@dataclass(frozen=True)
class Results:
    """Read access to a results folder (written by this or an earlier memsweep run)."""

    uri: str
    fs: pafs.FileSystem
    root: str

    def exists(self, name: str) -> bool:
        info = self.fs.get_file_info(f"{self.root}/{name}")
        return bool(info.type != pafs.FileType.NotFound)

    def dataset(self, table_name: str) -> ds.Dataset:
        """A ``pyarrow.dataset`` over one appended table (possibly empty)."""
        schema = APPEND_TABLES[table_name]
        path = f"{self.root}/{table_name}"
        if not self.exists(table_name):
            return ds.dataset(pa.Table.from_batches([], schema=schema))
        return ds.dataset(path, filesystem=self.fs, format="parquet", schema=schema)

    def table(self, table_name: str, columns: list[str] | None = None) -> pa.Table:
        """Read a table whole (appended or small), optionally only some columns."""
        if table_name in WHOLE_TABLES:
            schema = WHOLE_TABLES[table_name]
            path = f"{self.root}/{table_name}.parquet"
            if not self.exists(f"{table_name}.parquet"):
                empty = pa.Table.from_batches([], schema=schema)
                return empty.select(columns) if columns else empty
            try:
                return pq.read_table(path, filesystem=self.fs, columns=columns)
            except (pa.ArrowInvalid, OSError) as exc:
                raise DataError(
                    f"{path} is not a readable Parquet file: {_first_line(exc)}"
                ) from None
        try:
            return self.dataset(table_name).to_table(columns=columns)
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(
                f"{self.root}/{table_name}/ has a part file that cannot be read: {_first_line(exc)}"
            ) from None

    def text(self, name: str) -> str | None:
        if not self.exists(name):
            return None
        with self.fs.open_input_stream(f"{self.root}/{name}") as stream:
            return bytes(stream.read()).decode("utf-8")

    def versions(self) -> dict[str, Any]:
        try:
            raw = self.text("versions.json")
            data = json.loads(raw) if raw else {}
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise DataError(
                f"{self.uri}/versions.json cannot be read: {_first_line(exc)}"
            ) from None
        if not isinstance(data, dict):
            raise DataError(f"{self.uri}/versions.json is not a JSON object")
        return data


def _reason(exc: OSError) -> str:
    """``No space left on device`` rather than pyarrow's wrapping of it."""
    if exc.errno:
        return os.strerror(exc.errno)
    return exc.strerror or _first_line(exc)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def open_results(uri: str | os.PathLike[str]) -> Results:
    """Open a results folder for reading; :class:`DataError` if it is not one."""
    fs, root = resolve(uri)
    results = Results(uri=os.fspath(uri), fs=fs, root=root)
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        raise DataError(f"No such results folder: {os.fspath(uri)}")
    if not (results.exists("trials.parquet") or results.exists("samples")):
        raise DataError(
            f"{os.fspath(uri)} is not a memsweep results folder (no trials.parquet, no "
            "samples/). Point at results/<sweep-name>, made by `memsweep run`."
        )
    version = results.versions().get("schema_version", SCHEMA_VERSION)
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise DataError(
            f"{os.fspath(uri)} was written by a newer memsweep (schema {version}; this "
            f"one reads up to {SCHEMA_VERSION}). Upgrade memsweep to read it."
        )
    return results


def latest_attempts(table: pa.Table, trials: pa.Table) -> pa.Table:
    """The rows of ``table`` (samples or progress) from each trial's latest attempt.

    A resumed sweep restarts its interrupted trials; the rows of their earlier attempt
    stay in the dataset (nothing is ever rewritten) under the earlier ``run_id``, and
    ``trials.parquet`` names the latest. Kept: rows of that run, rows of no trial (Ray's
    own processes, the driver), and rows without a ``run_id`` (written before it existed).
    """
    import pyarrow.compute as pc

    if "run_id" not in table.column_names or "run_id" not in trials.column_names:
        return table
    known = trials.select(["trial_id", "run_id"]).filter(pc.is_valid(trials["run_id"]))
    if known.num_rows == 0:
        return table
    where = pc.index_in(table["trial_id"], value_set=known["trial_id"])
    expected = pc.take(known["run_id"], where)
    run_id = table["run_id"]
    keep = pc.or_kleene(
        pc.or_kleene(pc.is_null(expected), pc.is_null(run_id)), pc.equal(run_id, expected)
    )
    return table.filter(keep)


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
        f"schema version {SCHEMA_VERSION}. Appended tables are folders of Parquet part files;",
        "`trials` and `nodes` are single files, replaced whole.",
        "",
    ]
    for name, schema in {**APPEND_TABLES, **WHOLE_TABLES}.items():
        where = f"`{name}/part-*.parquet`" if name in APPEND_TABLES else f"`{name}.parquet`"
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

"""What a node's sampler hands the driver's collector: its settings, the raw sample rows'
schema, trainables' registrations, and one typed drain payload (:class:`SamplerDrain`)."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

SAMPLER_NAME_PREFIX = "memsweep_sampler_"
"""Named actors ``memsweep_sampler_<node_id>`` in the sweep's namespace."""

RAW_COLUMNS = (
    "ts",
    "pid",
    "ppid",
    "create_time",
    "name",
    "rss_bytes",
    "hwm_bytes",
    "swap_bytes",
    "rss_anon_bytes",
    "rss_file_bytes",
    "rss_shmem_bytes",
    "uss_bytes",
    "pss_bytes",
    "gpu_bytes",
    "cpu_time_s",
    "system",
)

RAW_SAMPLES = pa.schema(
    [
        pa.field("ts", pa.timestamp("us", tz="UTC")),
        pa.field("pid", pa.int32()),
        pa.field("ppid", pa.int32()),
        pa.field("create_time", pa.float64()),
        pa.field("name", pa.string()),
        pa.field("rss_bytes", pa.int64()),
        pa.field("hwm_bytes", pa.int64()),
        pa.field("swap_bytes", pa.int64()),
        pa.field("rss_anon_bytes", pa.int64()),
        pa.field("rss_file_bytes", pa.int64()),
        pa.field("rss_shmem_bytes", pa.int64()),
        pa.field("uss_bytes", pa.int64()),
        pa.field("pss_bytes", pa.int64()),
        pa.field("gpu_bytes", pa.int64()),
        pa.field("cpu_time_s", pa.float64()),
        pa.field("system", pa.string()),
    ]
)
"""What a sampler hands over: samples without trial and role (the collector adds them).
``system`` names a Ray system process (``raylet``, ``gcs``, ``dashboard``, ``driver``,
``memsweep``) or is null for workers."""


@dataclass(frozen=True)
class SamplerConfig:
    """What a sampler needs to know; built by the collector from the study."""

    interval_s: float = 0.1
    """Seconds between two rounds (RSS, swap, peak RSS of every process)."""
    full_interval_s: float = 1.0
    """Seconds between two full rounds: USS/PSS, CPU time, titles, new processes."""
    pss_reread_bytes: int = 256 * 1024
    """At a full round a process's ``smaps_rollup`` (USS/PSS) is read again only when
    its resident file or shmem pages moved by at least this many bytes in all since the
    last read (their sharers are unknown until read), any sampled process's shmem pages
    moved so while it holds some (Ray's object store: a process mapping an object
    changes the PSS of every process that maps it), a sampled process started or ended
    on the node (shared pages change sharers), or the last read is ``pss_max_age_s``
    old. Otherwise USS and PSS are the last read figures plus the
    change in the process's resident anonymous pages (``RssAnon``, from the status read
    of the same round): a page a process faults in anonymously is its own, so it counts
    whole in both. ``smaps_rollup`` walks the process's page tables: ~145 µs for an
    idle 8 MB Python process and ~8 ms for a Ray worker with PyTorch loaded on the
    reference machine (``status``: ~7 µs)."""
    pss_max_age_s: float = 10.0
    """The age at which a USS/PSS read is read again, seconds (``0``: every full round),
    within :attr:`pss_cpu_share`. Bounds what the status fields do not show: another
    process starting or stopping to share pages this one maps, and copy-on-write pages of
    a fork becoming private. These reads are spread over the full rounds, oldest first (one
    round walking every process's page tables would outlast the period)."""
    pss_cpu_share: float = 0.0015
    """The share of one core that ``smaps_rollup`` reads may take on average (0.15%),
    measured as the sampling thread's CPU time in each read. A process's first read is
    always made and not charged; so are, charged, the reads of processes whose sharers
    may have changed (a sampled process started or ended, another's shmem pages moved,
    another's file or shmem pages moved by a tenth of its size, as a process importing
    PyTorch): a sum of PSS would count shared pages twice without them. The reads a process's own
    moved file or shmem pages or its age call for are made, most-needed first, while
    the budget lasts (it accrues per second and holds at most ``pss_max_age_s`` seconds'
    worth); the rest wait for a later full round, their figures carried meanwhile (the
    anonymous pages' change, plus moved file and shmem pages shared as the last read's
    were).
    ``math.inf``: no budget. A Ray worker with PyTorch costs ~10–17 ms a read on the
    reference machine: at 0.15%, a node of ~25 Ray processes whose reads are all wanted
    has each read about once a minute. The default keeps the sampler within 1% of a core
    for 50 processes on that machine (`make bench`, section 1b)."""
    driver_pid: int | None = None
    """The sweep driver's pid, recorded as role ``driver`` when it runs on this node."""
    driver_node_id: str | None = None
    max_buffered_rounds: int = 36_000
    """Rounds kept when nobody drains (an hour at 10 Hz); the oldest are dropped first
    and the drop is reported as a gap."""


@dataclass(frozen=True)
class Registration:
    """A trainable's announcement (:func:`register_trial`): this pid and its placement
    group belong to ``trial_id``."""

    trial_id: str
    placement_group_id: str | None
    pid: int
    node_id: str
    ts: float
    """When the sampler received it, epoch seconds."""


@dataclass(frozen=True)
class SamplerDrain:
    """What one sampler hands the collector at a drain: everything since the last one."""

    node_id: str
    samples: pa.Table
    """Rows of :data:`RAW_SAMPLES`: one per process per round, without trial and role."""
    node_samples: pa.Table
    """Rows of :data:`memsweep.store.NODE_SAMPLES`: one per round."""
    registrations: tuple[Registration, ...]
    dropped_rounds: int
    """Rounds dropped because nobody drained for ``max_buffered_rounds`` rounds."""

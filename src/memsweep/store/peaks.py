"""A trial's peak: one definition, read from the samples table.

**The trial's peak** is the largest Σ PSS of its processes at one moment: PSS splits a
page shared by *n* processes (shared libraries, an object in Ray's object store that
the trainable and its actors all read) into *n* parts, so the sum counts every page
once. It is what "peak" means everywhere memsweep prints one (the live Tune table's
``memory/peak_bytes``, the run summary, the budget search and its stopper, the
collector's ``memory_budget`` check) and what a memory budget bounds.

Two figures stay next to it, as their own columns, because each answers another
question: **peak Σ RSS** (resident sizes summed at one instant: counts a shared page
once per process that maps it) and **Σ VmHWM** (each process's kernel high-water mark,
summed: an upper bound that still shows a spike shorter than the sampling period, but
counts shared pages once per process too, and adds peaks of different moments).

PSS is read every ``sampling.full_interval_s`` (1 s by default) from
``/proc/PID/smaps_rollup``; only rounds in which every process of the trial on that
node has a PSS reading count, so a round never mixes a fresh process without one.

The definition is one SQL query (:func:`peaks_sql`, run by DuckDB over results on disk:
:func:`trial_peaks`) and its Arrow twin for rows in memory (:func:`trial_peaks_arrow`,
pyarrow compute only): the sweep's driver computes the live peaks with the twin, since
DuckDB would add ~45 MB to the driver's RSS on the node it measures. A test holds the
two to the same answers on committed runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

PEAK_DEFINITION = "max over time of Σ PSS of the trial's processes (shared pages once)"
"""One line for reports and help texts: what "peak" means."""


@dataclass(frozen=True)
class TrialPeak:
    """One trial's peak, and the two figures kept next to it (bytes; None without data)."""

    trial_id: str
    peak_bytes: int | None
    """Max over time of Σ PSS of the trial's processes: THE peak (module docstring)."""
    peak_rss_bytes: int | None
    """Max over time of Σ RSS: counts a shared page once per process mapping it."""
    hwm_bytes: int | None
    """Σ over the trial's processes of each one's largest VmHWM: spikes between samples
    show here, shared pages count once per process."""
    processes: int
    """Distinct processes (node, pid, start time) sampled in the trial."""


def peaks_sql(view: str = "samples", *, by_role: bool = False) -> str:
    """The one peak query over a ``samples``-schema view (``view`` names it).

    Columns: ``trial_id`` (and ``role`` with ``by_role``), ``peak_bytes`` (max over time of
    Σ PSS), ``peak_rss_bytes`` (max over time of Σ RSS), ``hwm_bytes`` (Σ of each process's
    largest VmHWM) and ``processes``. ``by_role`` sums over the processes of one role
    instead of the whole trial (a role's peak; the roles' peaks come at different moments,
    so they do not add up to the trial's). Rounds on different nodes do not share
    timestamps: each node's largest round per second is taken, then the nodes are added
    up, so that a trial spread over nodes is counted whole and no round twice."""
    keys = "trial_id, role" if by_role else "trial_id"
    return f"""
WITH per_round AS (
    SELECT {keys}, node_id, ts,
           SUM(rss_bytes) AS rss, SUM(pss_bytes) AS pss, COUNT(pss_bytes) AS n_pss,
           COUNT(*) AS n
    FROM {view} WHERE trial_id IS NOT NULL GROUP BY {keys}, node_id, ts
), per_node_second AS (
    SELECT {keys}, node_id, date_trunc('second', ts) AS sec,
           MAX(rss) AS rss, MAX(CASE WHEN n_pss = n THEN pss END) AS pss
    FROM per_round GROUP BY {keys}, node_id, sec
), per_second AS (
    SELECT {keys}, sec, SUM(rss) AS rss, SUM(pss) AS pss
    FROM per_node_second GROUP BY {keys}, sec
), hwm AS (
    SELECT {keys}, SUM(max_hwm) AS hwm, COUNT(*) AS processes FROM (
        SELECT {keys}, node_id, pid, create_time, MAX(hwm_bytes) AS max_hwm
        FROM {view} WHERE trial_id IS NOT NULL
        GROUP BY {keys}, node_id, pid, create_time
    ) GROUP BY {keys}
)
SELECT {keys}, MAX(p.pss)::DOUBLE AS peak_bytes, MAX(p.rss)::DOUBLE AS peak_rss_bytes,
       ANY_VALUE(h.hwm)::DOUBLE AS hwm_bytes, ANY_VALUE(h.processes) AS processes
FROM per_second p JOIN hwm h USING ({keys}) GROUP BY {keys}
"""


def trial_peaks(samples: Any) -> dict[str, TrialPeak]:
    """trial id → its :class:`TrialPeak`, from a ``samples``-schema table or dataset
    (anything DuckDB can register: a ``pyarrow.Table`` or ``pyarrow.dataset.Dataset``).
    Trials without samples are absent."""
    import duckdb

    con = duckdb.connect()
    try:
        con.register("samples", samples)
        rows = con.execute(peaks_sql()).fetchall()
    finally:
        con.close()

    def whole(value: Any) -> int | None:
        return None if value is None else int(value)

    return {
        str(trial_id): TrialPeak(str(trial_id), whole(pss), whole(rss), whole(hwm), int(n or 0))
        for trial_id, pss, rss, hwm, n in rows
    }


def _per_second(samples: pa.Table, keys: list[str], *, rss: bool) -> pa.Table:
    """The rounds rule of :func:`peaks_sql` in pyarrow compute, grouped by ``keys``
    (``trial_id``, or ``trial_id`` and ``role``): per round (node, ts) Σ PSS, only when
    every process of the group on that node has a reading, each node's largest round per
    second, nodes added up. Columns: ``keys``, ``sec``, ``pss`` (bytes; null in a second
    without a complete round) and, with ``rss``, ``rss`` (Σ RSS by the same steps)."""
    import pyarrow.compute as pc

    sums = [("rss_bytes", "sum")] if rss else []
    per_round = samples.group_by([*keys, "node_id", "ts"], use_threads=False).aggregate(
        [
            *sums,
            ("pss_bytes", "sum"),
            ("pss_bytes", "count"),
            ("pid", "count", pc.CountOptions(mode="all")),
        ]
    )
    complete = pc.equal(per_round["pss_bytes_count"], per_round["pid_count"])
    per_round = per_round.append_column(
        "pss", pc.if_else(complete, per_round["pss_bytes_sum"], None)
    ).append_column("sec", pc.floor_temporal(per_round["ts"], unit="second"))
    maxima = [("rss_bytes_sum", "max")] if rss else []
    per_node_second = per_round.group_by([*keys, "node_id", "sec"], use_threads=False).aggregate(
        [*maxima, ("pss", "max")]
    )
    totals = [("rss_bytes_sum_max", "sum")] if rss else []
    per_second = per_node_second.group_by([*keys, "sec"], use_threads=False).aggregate(
        [*totals, ("pss_max", "sum")]
    )
    names = {"rss_bytes_sum_max_sum": "rss", "pss_max_sum": "pss"}
    return per_second.rename_columns([names.get(n, n) for n in per_second.column_names])


def _with_trial(samples: pa.Table, columns: list[str]) -> pa.Table:
    """``columns`` of the rows of ``samples`` that belong to a trial."""
    import pyarrow.compute as pc

    return samples.select(columns).filter(pc.is_valid(samples["trial_id"]))


def trial_peaks_arrow(samples: pa.Table) -> dict[str, TrialPeak]:
    """:func:`trial_peaks` of a ``samples``-schema ``pyarrow.Table`` in memory, by the
    same steps as :func:`peaks_sql` (per round, each node's largest round per second,
    nodes added up, max over seconds; Σ of each process's largest VmHWM) with pyarrow
    compute instead of DuckDB."""
    import pyarrow.compute as pc

    table = _with_trial(
        samples,
        ["trial_id", "node_id", "ts", "pid", "create_time", "rss_bytes", "pss_bytes", "hwm_bytes"],
    )
    if table.num_rows == 0:
        return {}
    peaks = (
        _per_second(table, ["trial_id"], rss=True)
        .group_by("trial_id", use_threads=False)
        .aggregate([("rss", "max"), ("pss", "max")])
    )
    per_process = table.group_by(
        ["trial_id", "node_id", "pid", "create_time"], use_threads=False
    ).aggregate([("hwm_bytes", "max")])
    hwm = per_process.group_by("trial_id", use_threads=False).aggregate(
        [("hwm_bytes_max", "sum"), ("trial_id", "count", pc.CountOptions(mode="all"))]
    )
    hwm_of = {
        row["trial_id"]: (row["hwm_bytes_max_sum"], row["trial_id_count"])
        for row in hwm.to_pylist()
    }

    def whole(value: Any) -> int | None:
        return None if value is None else int(value)

    out = {}
    for row in peaks.to_pylist():
        trial_id = str(row["trial_id"])
        trial_hwm, processes = hwm_of.get(row["trial_id"], (None, 0))
        out[trial_id] = TrialPeak(
            trial_id,
            whole(row["pss_max"]),
            whole(row["rss_max"]),
            whole(trial_hwm),
            int(processes or 0),
        )
    return out


@dataclass(frozen=True)
class RoleMemory:
    """One role's memory in one trial (bytes; None before its first PSS reading)."""

    trial_id: str
    role: str
    current_bytes: int | None
    """Σ PSS of the role's processes in the latest second with a PSS reading."""
    peak_bytes: int | None
    """Max over time of Σ PSS of the role's processes: the trial's peak definition,
    restricted to this role's processes."""


def role_memory(samples: pa.Table) -> dict[tuple[str, str], RoleMemory]:
    """(trial id, role) → its :class:`RoleMemory`, from a ``samples``-schema
    ``pyarrow.Table``, by the rounds rule of :func:`trial_peaks_arrow` per role (only
    rounds in which every process of the role on that node has a PSS reading; each
    node's largest round per second; nodes added up per second)."""
    import pyarrow.compute as pc

    table = _with_trial(samples, ["trial_id", "role", "node_id", "ts", "pid", "pss_bytes"])
    if table.num_rows == 0:
        return {}
    per_second = _per_second(table, ["trial_id", "role"], rss=False).filter(
        pc.is_valid(pc.field("pss"))
    )
    out: dict[tuple[str, str], RoleMemory] = {}
    for row in sorted(per_second.to_pylist(), key=lambda r: r["sec"]):
        key = (str(row["trial_id"]), str(row["role"]))
        value = int(row["pss"])
        before = out.get(key)
        peak = (
            value if before is None or before.peak_bytes is None else max(before.peak_bytes, value)
        )
        out[key] = RoleMemory(key[0], key[1], value, peak)
    return out

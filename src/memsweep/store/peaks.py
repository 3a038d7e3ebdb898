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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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

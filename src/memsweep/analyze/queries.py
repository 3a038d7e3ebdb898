"""DuckDB views and queries over a results folder's sample files: the views ``samples``
and ``trial_samples`` (each trial's latest attempt) and the aggregates :mod:`memsweep.analyze.load` reads."""

from __future__ import annotations

import duckdb
import pandas as pd
import pyarrow.fs as pafs

from memsweep.store import Results
from memsweep.store.peaks import peaks_sql


def sample_files(results: Results) -> list[str]:
    return results.files("samples")


def connect(results: Results, files: list[str], trials: pd.DataFrame) -> duckdb.DuckDBPyConnection:
    """A duckdb connection with views ``samples`` (all rows) and ``trial_samples`` (rows of
    trials, from each trial's latest driver run only)."""
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    if isinstance(results.fs, pafs.LocalFileSystem):
        listed = ", ".join("'" + path.replace("'", "''") + "'" for path in files)
        con.execute(
            f"CREATE VIEW samples AS SELECT * FROM read_parquet([{listed}], union_by_name = true)"
        )
    else:
        # duckdb cannot glob an arbitrary pyarrow filesystem: let it scan the dataset,
        # which still pushes the column projection down to the Parquet reader.
        con.register("samples", results.dataset("samples"))
    columns = {row[0] for row in con.sql("DESCRIBE samples").fetchall()}
    runs = trials["run_id"].dropna()
    if "run_id" in columns and len(runs):
        # A resumed trial restarts its processes; samples of the attempts before the
        # resume describe other processes and an earlier buffer: keep the latest attempt.
        con.register(
            "trial_runs", pd.DataFrame({"trial_id": runs.index, "run_id": runs.to_numpy()})
        )
        con.execute(
            "CREATE VIEW trial_samples AS SELECT s.* FROM samples s "
            "LEFT JOIN trial_runs r ON s.trial_id = r.trial_id "
            "WHERE s.trial_id IS NOT NULL "
            "AND (r.run_id IS NULL OR s.run_id IS NULL OR s.run_id = r.run_id)"
        )
    else:
        con.execute("CREATE VIEW trial_samples AS SELECT * FROM samples WHERE trial_id IS NOT NULL")
    return con


RANGES_SQL = """
SELECT trial_id, min(epoch_us(ts)) AS t0_us, max(epoch_us(ts)) AS t1_us
FROM trial_samples GROUP BY trial_id
"""

PER_PROCESS_SQL = """
CREATE TEMP TABLE per_process AS
SELECT s.trial_id, s.role, s.node_id, s.pid, s.create_time,
       (epoch_us(s.ts) - w.t0_us) // w.width_us AS bucket,
       avg(s.rss_bytes) AS rss, avg(s.pss_bytes) AS pss, avg(s.uss_bytes) AS uss,
       max(s.hwm_bytes)::DOUBLE AS hwm, avg(s.swap_bytes) AS swap, count(*) AS rounds,
       avg(epoch_us(s.ts) - w.t0_us) FILTER (WHERE s.pss_bytes IS NOT NULL) AS t_pss_us,
       avg(epoch_us(s.ts) - w.t0_us) AS t_all_us
FROM trial_samples s JOIN widths w ON s.trial_id = w.trial_id
GROUP BY s.trial_id, s.role, s.node_id, s.pid, s.create_time, bucket
"""

SERIES_SQL = """
SELECT trial_id, role, bucket,
       sum(rss) AS rss_bytes,
       CASE WHEN count(pss) = count(*) THEN sum(pss) END AS pss_bytes,
       CASE WHEN count(uss) = count(*) THEN sum(uss) END AS uss_bytes,
       sum(hwm) AS hwm_bytes, sum(swap) AS swap_bytes, max(rounds) AS rounds,
       avg(t_pss_us) / 1e6 AS t_pss_s, avg(t_all_us) / 1e6 AS t_all_s
FROM per_process GROUP BY trial_id, role, bucket
"""

PEAKS_SQL = f"""
SELECT * FROM ({peaks_sql("trial_samples", by_role=True)})
UNION ALL BY NAME
SELECT *, 'total' AS role FROM ({peaks_sql("trial_samples")})
"""
"""Per trial, per role and for the trial (role ``total``): the one peak (max over time of
Σ PSS, :mod:`memsweep.store.peaks`) with peak Σ RSS and Σ VmHWM beside it."""

SYSTEM_SQL = """
WITH per_process AS (
    SELECT role, node_id, pid, create_time, epoch_us(ts) // 60000000 AS minute,
           sum(pss_bytes)::DOUBLE AS pss, count(pss_bytes) AS full_rounds,
           sum(rss_bytes)::DOUBLE AS rss, count(*) AS rounds
    FROM samples
    WHERE trial_id IS NULL AND role IN ('ray_system', 'ray_worker', 'driver', 'memsweep')
    GROUP BY role, node_id, pid, create_time, minute
), per_minute AS (
    SELECT node_id, minute, max(full_rounds) AS full_rounds, max(rounds) AS rounds
    FROM per_process GROUP BY node_id, minute
), per_role AS (
    SELECT p.role, p.node_id, p.minute,
           sum(p.pss) / NULLIF(max(m.full_rounds), 0) AS pss, sum(p.rss) / max(m.rounds) AS rss
    FROM per_process p JOIN per_minute m ON p.node_id = m.node_id AND p.minute = m.minute
    GROUP BY p.role, p.node_id, p.minute
)
SELECT role, node_id, median(pss) AS pss_bytes, median(rss) AS rss_bytes
FROM per_role GROUP BY role, node_id
"""
"""Processes of no trial per node and role (Ray's own, the Tune driver, memsweep's samplers): the time average within each minute (a process
counts for the rounds it was alive in, so churning idle workers are not summed; the
minute's round count is the largest per-process count, the raylet's), then the median
over minutes."""

"""The short per-trial summary printed at the end of ``memsweep run``.

Peak memory of a trial three ways, because each answers a different question:
``peak_pss`` (shared pages split between processes: what the trial really occupies),
``peak_rss`` (summed resident sizes at one instant: double counts shared libraries and
the object store), and ``peak_hwm`` (summed per-process high-water marks: an upper bound
that includes spikes shorter than the sampling period).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb

from memsweep.store import Results


@dataclass(frozen=True)
class TrialSummary:
    trial_id: str
    factors: dict[str, Any]
    status: str
    processes: int
    peak_rss_bytes: int | None
    peak_pss_bytes: int | None
    peak_hwm_bytes: int | None


def gib(value: int | float | None) -> str:
    return "-" if value is None else f"{value / 2**30:.2f} GiB"


def trial_summaries(results: Results) -> list[TrialSummary]:
    """One summary per trial in the trials table, in start order."""
    trials = results.table("trials").to_pylist()
    samples = results.dataset("samples")
    con = duckdb.connect()
    con.register("samples", samples)
    peaks = con.execute(
        """
        WITH per_round AS (
            SELECT trial_id, node_id, ts,
                   SUM(rss_bytes) AS rss, SUM(pss_bytes) AS pss, COUNT(pss_bytes) AS n_pss,
                   COUNT(*) AS n
            FROM samples WHERE trial_id IS NOT NULL GROUP BY trial_id, node_id, ts
        ), per_node_second AS (
            -- Rounds on different nodes do not share timestamps: take each node's
            -- largest round per second, then add the nodes up, so that a trial spread
            -- over nodes is counted whole and no round is counted twice.
            SELECT trial_id, node_id, date_trunc('second', ts) AS sec,
                   MAX(rss) AS rss, MAX(CASE WHEN n_pss = n THEN pss END) AS pss
            FROM per_round GROUP BY trial_id, node_id, sec
        ), per_trial_round AS (
            SELECT trial_id, sec, SUM(rss) AS rss, SUM(pss) AS pss
            FROM per_node_second GROUP BY trial_id, sec
        ), hwm AS (
            SELECT trial_id, SUM(max_hwm) AS hwm, COUNT(*) AS processes FROM (
                SELECT trial_id, node_id, pid, create_time, MAX(hwm_bytes) AS max_hwm
                FROM samples WHERE trial_id IS NOT NULL
                GROUP BY trial_id, node_id, pid, create_time
            ) GROUP BY trial_id
        )
        SELECT p.trial_id, MAX(p.rss), MAX(p.pss), ANY_VALUE(h.hwm), ANY_VALUE(h.processes)
        FROM per_trial_round p JOIN hwm h USING (trial_id) GROUP BY p.trial_id
        """
    ).fetchall()
    by_trial = {row[0]: row[1:] for row in peaks}
    out = []
    for trial in sorted(trials, key=lambda t: (t.get("started_at") is None, t.get("started_at"))):
        rss, pss, hwm, processes = by_trial.get(trial["trial_id"], (None, None, None, 0))
        out.append(
            TrialSummary(
                trial_id=trial["trial_id"],
                factors={
                    "replay_capacity": trial.get("replay_capacity"),
                    "model": trial.get("model"),
                    "num_workers": trial.get("num_workers"),
                    "framework": trial.get("framework"),
                },
                status=str(trial.get("status")),
                processes=int(processes or 0),
                peak_rss_bytes=None if rss is None else int(rss),
                peak_pss_bytes=None if pss is None else int(pss),
                peak_hwm_bytes=None if hwm is None else int(hwm),
            )
        )
    return out


def format_summaries(summaries: list[TrialSummary]) -> str:
    header = (
        "trial",
        "capacity",
        "model",
        "workers",
        "framework",
        "status",
        "procs",
        "peak PSS",
        "peak RSS",
        "Σ VmHWM",
    )
    rows = [
        (
            s.trial_id,
            str(s.factors["replay_capacity"]),
            str(s.factors["model"]),
            str(s.factors["num_workers"]),
            str(s.factors["framework"]),
            s.status,
            str(s.processes),
            gib(s.peak_pss_bytes),
            gib(s.peak_rss_bytes),
            gib(s.peak_hwm_bytes),
        )
        for s in summaries
    ]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True))
        for row in [header, *rows]
    ]
    return "\n".join(lines)

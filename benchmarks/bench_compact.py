"""Files per table after compaction: a sweep's many part files merged into a few.

A :class:`memsweep.store.ResultsWriter` appends ``flushes`` parts to every appended table,
rows shaped like a sweep's (``rows_per_flush`` samples of ``processes`` processes per
flush, one node row per round), as a default sweep's 1 s flushes do; then
:func:`memsweep.store.compact.compact_results` merges them, as every sweep does when it
ends. Reported: files per table before and after, bytes, and the compaction's wall time.
Goal: at most 2 files per table after compaction.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from benchlib import Profile, Row, Stat, Timer, log

GOAL_FILES = 2


def _write_sweep(root: Path, flushes: int, processes: int, rounds: int) -> None:
    from memsweep.store import ResultsWriter

    writer = ResultsWriter(root)
    writer.replace("trials", [{"trial_id": "t1", "status": "terminated"}])
    start_us = 1_800_000_000_000_000
    for flush in range(flushes):
        ts = [start_us + (flush * rounds + r) * 100_000 for r in range(rounds)]
        writer.append_rows(
            "samples",
            [
                {
                    "ts": t,
                    "node_id": "n1",
                    "pid": 1000 + p,
                    "role": "trainable" if p == 0 else "ray_system",
                    "trial_id": "t1" if p == 0 else None,
                    "rss_bytes": 500_000_000 + flush * 1000 + p,
                    "hwm_bytes": 600_000_000 + flush * 1000,
                }
                for t in ts
                for p in range(processes)
            ],
        )
        writer.append_rows(
            "node_samples",
            [{"ts": t, "node_id": "n1", "total_bytes": 24 * 2**30} for t in ts],
        )
        writer.append_rows("progress", [{"ts": ts[-1], "trial_id": "t1", "env_steps": flush * 100}])
    writer.append_rows("events", [{"ts": start_us, "kind": "sampler_started"}])


def run(profile: Profile, work: Path) -> tuple[list[Row], dict[str, Any]]:
    from memsweep.store.compact import compact_results

    timer = Timer()
    flushes = 60 if profile.name == "smoke" else 300
    root = work / "compact"
    shutil.rmtree(root, ignore_errors=True)
    log(f"compaction: {flushes} flushes of 10 rounds × 10 processes, then compact")
    _write_sweep(root, flushes=flushes, processes=10, rounds=10)
    done = compact_results(root)
    rows = []
    for table in done.tables:
        met = table.files_after <= GOAL_FILES
        rows.append(
            Row(
                key=f"compaction.files.{table.table}",
                section="compaction",
                figure=f"{table.table}: files after compacting {table.files_before} parts",
                tool="memsweep compact",
                unit="count",
                stat=Stat.one(table.files_after),
                goal=f"≤ {GOAL_FILES} files per table",
                status="met" if met else "MISSED",
                note=(
                    f"{table.bytes_before / 1e6:.2f} MB → {table.bytes_after / 1e6:.2f} MB, "
                    f"{table.rows:,} rows"
                ),
            )
        )
    rows.append(
        Row(
            key="compaction.seconds",
            section="compaction",
            figure=f"wall time to compact {sum(t.files_before for t in done.tables)} files",
            tool="memsweep compact",
            unit="s",
            stat=Stat.one(done.seconds),
        )
    )
    details = {
        "tables": [t.__dict__ for t in done.tables],
        "seconds": done.seconds,
        **timer.done(),
    }
    shutil.rmtree(root, ignore_errors=True)
    return rows, details

"""``make bench`` still runs: ``benchmarks/run.py --smoke`` end to end, every row present.

A smoke test, not a timed one: it checks that each section's code path runs on real
Ray, RLlib and Tune with tiny sizes and lands in ``bench.json`` and ``bench.md``, never
what the figures are.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]

FIXED_ROWS = {
    "overhead.none",
    "overhead.memsweep_10hz",
    "overhead.memsweep_50hz",
    "overhead.tune_log_sys_usage",
    "overhead.ab_ratio",
    "sampler.actor_cpu.memsweep_10hz",
    "sampler.actor_rss.memsweep_10hz",
    "sampler.scaling",
    *(
        f"peak.{tool}.{ms}ms"
        for tool in ("memsweep_hwm", "memsweep_rss", "tune_log_sys_usage", "mlflow")
        for ms in (50, 200, 1000)
    ),
    "peak.memsweep_hwm.50ms.small",
    "peak.memsweep_rss.50ms.small",
    "attribution.processes",
    "attribution.bytes",
    "attribution.double_sampled",
    "attribution.pss_vs_mapped",
    "attribution.rss_vs_mapped",
    "attribution.pss_vs_used",
    "analysis.scaling",
    "answer.wall.default",
    "answer.prediction_error.default",
    "accuracy.leave_one_out.plateau.total.median_error",
    "accuracy.leave_one_out.plateau.total.under_rate",
    *(f"compaction.files.{table}" for table in ("samples", "node_samples", "progress", "events")),
    "compaction.seconds",
    "driver.peak_rss",
    "driver.floor_rss",
    "sampler.actor_cpu.default_sweep",
}
"""Rows whose key does not depend on the sizes of the run."""


def test_bench_smoke_writes_every_row_of_the_table(tmp_path: Path) -> None:
    # GIVEN the benchmark at its smoke sizes, writing into a temporary folder
    # WHEN it runs as `make bench BENCH_ARGS=--smoke` would
    run = subprocess.run(
        [sys.executable, "benchmarks/run.py", "--smoke", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    # THEN it succeeds and prints the table
    assert run.returncode == 0, run.stderr[-4000:]
    assert "1. Overhead" in run.stdout and "5. Time to answer" in run.stdout
    # AND bench.json has every row, each with a figure or a reason why not
    document = json.loads((tmp_path / "bench.json").read_text())
    rows = {row["key"]: row for row in document["rows"]}
    assert set(rows) >= FIXED_ROWS, sorted(FIXED_ROWS - set(rows))
    assert len([k for k in rows if k.startswith("sampler.cost.n")]) >= 2
    assert len([k for k in rows if k.startswith("analysis.rows_")]) >= 2
    assert document["failed_sections"] == []
    for row in rows.values():
        assert row["stat"] is not None or row["status"] in {"n/a", "not measured"}, row
    # AND the measured figures came with the machine they were measured on
    machine = document["machine"]
    assert machine["logical_cores"] and machine["memory_bytes"] and machine["cpu_model"]
    assert machine["packages"]["ray"]
    # AND bench.md holds the same table
    markdown = (tmp_path / "bench.md").read_text()
    assert "| **2. Peak capture** |" in markdown

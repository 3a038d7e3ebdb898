"""How fast is ``memsweep.analyze`` on a big sample table?

Generates a synthetic sweep with the real schema (through ``ResultsWriter``) holding N
sample rows, then runs the analysis in a fresh child process and reports its wall time
and peak RSS::

    python benchmarks/bench_analysis.py --rows 1000000 10000000

``run_benchmark`` returns the figures as a dict (``make bench`` calls it).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from memsweep.store import PROGRESS, SAMPLES, ResultsWriter

EPOCH_US = 1_750_000_000_000_000
INTERVAL_S = 0.1
FULL_EVERY = 10
CHUNK_ROUNDS = 100_000
DESIGN = [
    (cap, model, workers, framework)
    for cap in (100_000, 300_000, 1_000_000)
    for model in (("256x256", 329_000), ("1024x1024", 2_100_000))
    for workers in (1, 4)
    for framework in ("torch", "tf2")
]


def _strings(value: str, n: int) -> pa.Array:
    return pa.DictionaryArray.from_arrays(np.zeros(n, dtype=np.int32), pa.array([value])).cast(
        pa.string()
    )


def _column_table(columns: dict[str, Any], schema: pa.Schema, n: int) -> pa.Table:
    return pa.table({f.name: columns.get(f.name, pa.nulls(n, f.type)) for f in schema}).cast(schema)


def generate(path: Path, rows: int, seed: int = 0) -> int:
    """Write a sweep of ``len(DESIGN)`` trials with about ``rows`` sample rows.

    Returns the number of sample rows written."""
    rng = np.random.default_rng(seed)
    writer = ResultsWriter(path)
    writer.write_text(
        "study.yaml",
        f"name: bench\nsampling:\n  interval_s: {INTERVAL_S}\n"
        f"  full_interval_s: {INTERVAL_S * FULL_EVERY}\n",
    )
    writer.write_text("versions.json", json.dumps({"schema_version": 1}))
    processes = [1 + w + 2 for _, _, w, _ in DESIGN]  # + 2 system processes sampled alongside
    rounds = max(rows // sum(processes), 50)
    written = 0
    trial_rows = []
    start_s = 0.0
    for index, (cap, (label, params), workers, framework) in enumerate(DESIGN):
        trial_id = f"bench_{index:03d}"
        steps_per_s = cap / (0.4 * rounds * INTERVAL_S)  # the buffer fills in 40 % of the run
        base = 900e6 + (300e6 if framework != "torch" else 0) + 16 * params
        runner = (250e6 if framework == "torch" else 420e6) + 4 * params
        roles = ["trainable"] + ["env_runner"] * workers + ["ray_system", "driver"]
        for first in range(0, rounds, CHUNK_ROUNDS):
            k = np.arange(first, min(first + CHUNK_ROUNDS, rounds))
            t = k * INTERVAL_S
            stored = np.minimum(t * steps_per_s, cap)
            full = (k % FULL_EVERY) == 0
            parts = []
            for pid, role in enumerate(roles):
                n = len(k)
                if role == "trainable":
                    private = base + 8_300 * stored
                elif role == "env_runner":
                    private = np.full(n, runner)
                else:
                    private = np.full(n, 150e6 if role == "ray_system" else 300e6)
                private = private + rng.normal(0, 2e6, n)
                rss = (private + 100e6).astype(np.int64)
                pss = pa.array((private + 30e6).astype(np.int64), mask=~full)
                in_trial = role not in ("ray_system", "driver")
                parts.append(
                    _column_table(
                        {
                            "ts": pa.array(
                                EPOCH_US + np.round((start_s + t) * 1e6).astype(np.int64)
                            ).cast(SAMPLES.field("ts").type),
                            "node_id": _strings("node0", n),
                            "pid": pa.array(np.full(n, 10_000 * index + pid, dtype=np.int32)),
                            "create_time": pa.array(np.full(n, 1.75e9 + start_s)),
                            "trial_id": _strings(trial_id, n)
                            if in_trial
                            else pa.nulls(n, pa.string()),
                            "role": _strings(role, n),
                            "rss_bytes": pa.array(rss),
                            "hwm_bytes": pa.array(np.maximum.accumulate(rss)),
                            "pss_bytes": pss,
                            "uss_bytes": pss,
                        },
                        SAMPLES,
                        n,
                    )
                )
            table = pa.concat_tables(parts)
            writer.append("samples", table)
            written += table.num_rows
        p_t = np.arange(1.0, rounds * INTERVAL_S, 1.0)
        p_steps = p_t * steps_per_s
        writer.append(
            "progress",
            _column_table(
                {
                    "ts": pa.array(
                        EPOCH_US + np.round((start_s + p_t) * 1e6).astype(np.int64)
                    ).cast(PROGRESS.field("ts").type),
                    "trial_id": _strings(trial_id, len(p_t)),
                    "iteration": pa.array(np.arange(1, len(p_t) + 1)),
                    "env_steps": pa.array(p_steps.astype(np.int64)),
                    "replay_size": pa.array(np.minimum(p_steps, cap).astype(np.int64)),
                },
                PROGRESS,
                len(p_t),
            ),
        )
        trial_rows.append(
            {
                "trial_id": trial_id,
                "study": "bench",
                "algorithm": "DQN",
                "replay_capacity": cap,
                "model": label,
                "num_workers": workers,
                "framework": framework,
                "model_params": params,
                "obs_bytes": 4096,
                "built_replay_capacity": cap,
                "status": "terminated",
            }
        )
        start_s += rounds * INTERVAL_S + 5
    writer.replace("trials", trial_rows)
    return written


_CHILD = """
import json, resource, sys, time
from pathlib import Path
start = time.perf_counter()
from memsweep.analyze import analyze_results
from memsweep.report.document import write_report
imported = time.perf_counter()
analysis = analyze_results(sys.argv[1])
analysed = time.perf_counter()
write_report(analysis, Path(sys.argv[2]))
done = time.perf_counter()
print(json.dumps({
    "import_s": imported - start,
    "read_s": analysis.timings_s["read_s"],
    "analysis_s": analysed - imported,
    "report_s": done - analysed,
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across exec.
    "peak_rss_bytes": next(
        int(line.split()[1]) * 1024
        for line in open("/proc/self/status")
        if line.startswith("VmHWM:")
    ),
}))
"""


def run_benchmark(
    rows: Sequence[int], workdir: Path | None = None, keep: bool = False
) -> dict[int, dict[str, float]]:
    """Generate and analyse a sweep per row count; returns ``{rows: figures}``.

    Figures: ``rows_written``, ``generate_s``, ``import_s``, ``read_s`` (duckdb
    aggregation), ``analysis_s`` (read + phases + models), ``report_s`` (plots, files),
    ``peak_rss_bytes`` (of the analysing process), ``data_bytes`` (Parquet on disk).
    """
    root = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="memsweep-bench-"))
    out: dict[int, dict[str, float]] = {}
    try:
        for n in rows:
            sweep = root / f"bench-{n}"
            shutil.rmtree(sweep, ignore_errors=True)
            clock = time.perf_counter()
            written = generate(sweep, n)
            generate_s = time.perf_counter() - clock
            child = subprocess.run(
                [sys.executable, "-c", _CHILD, str(sweep), str(root / f"analysis-{n}")],
                check=True,
                capture_output=True,
                text=True,
            )
            figures = json.loads(child.stdout.strip().splitlines()[-1])
            size = sum(f.stat().st_size for f in (sweep / "samples").glob("*.parquet"))
            out[n] = {
                "rows_written": written,
                "generate_s": generate_s,
                "data_bytes": size,
                **figures,
            }
            if not keep:
                shutil.rmtree(sweep, ignore_errors=True)
    finally:
        if not keep and workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    return out


def format_table(results: dict[int, dict[str, float]]) -> str:
    header = (
        f"{'rows':>12} {'parquet':>9} {'read':>7} {'analysis':>9} {'report':>7} {'peak RSS':>9}"
    )
    lines = [header]
    for figures in results.values():
        lines.append(
            f"{int(figures['rows_written']):>12,} {figures['data_bytes'] / 1e6:>7.0f}MB "
            f"{figures['read_s']:>6.1f}s {figures['analysis_s']:>8.1f}s "
            f"{figures['report_s']:>6.1f}s "
            f"{figures['peak_rss_bytes'] / 1e6:>7.0f}MB"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[int, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument(
        "--workdir", type=Path, help="where to write the sweeps (default: a temp dir)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated sweeps")
    args = parser.parse_args(argv)
    results = run_benchmark(args.rows, args.workdir, args.keep)
    print(format_table(results))
    return results


if __name__ == "__main__":
    main()

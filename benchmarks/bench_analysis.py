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

from memsweep.testing.bulk import write_bulk_sweep

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
            written = write_bulk_sweep(sweep, n)
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

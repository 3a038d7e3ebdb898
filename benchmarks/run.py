"""``make bench``: memsweep against the tools users would otherwise use, and against its goals.

One command, one table, every comparison measured in the same run::

    python benchmarks/run.py            # a few minutes (make bench)
    python benchmarks/run.py --smoke    # tiny sizes, every row's code path (CI)
    python benchmarks/run.py --full     # long repeats, 50M rows, the default sweep itself

Sections: overhead (env steps/s with no monitor, memsweep at 10 and 50 Hz, Tune's
``log_sys_usage``) and the sampler's own cost; peak capture of 50 ms / 200 ms / 1 s
spikes (memsweep, Tune, MLflow); attribution on a two-node cluster; analysis speed; time
to answer; the growth verdict as a detector on real runs with planted leaks; prediction
accuracy (leave-one-out and held out) on the committed real sweeps; files per table after
compaction; the driver's peak RSS during the default sweep. Writes ``results/bench-<machine>/bench.json`` and ``bench.md`` (with the machine's
specs) and prints the table on stdout; progress goes to stderr. A goal memsweep misses
is marked MISSED. Exit code 0, or 1 when a section failed (its row says why), or 2 for
bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import benchlib
from benchlib import PROFILES, REPO, Profile, Row, log
from memsweep.claims.runner import machine_tag

SECTION_ORDER = (
    "overhead",
    "sampler",
    "peak",
    "attribution",
    "analysis",
    "answer",
    "growth",
    "accuracy",
    "compaction",
    "driver",
)


@dataclass(frozen=True)
class BenchConfig:
    """What one benchmark run does, from the command line."""

    profile: Profile
    out: Path
    """Folder for bench.json and bench.md (raw runs go to ``out/work``)."""
    mlflow_venv: Path
    """Virtualenv with MLflow (created on first use)."""
    only: tuple[str, ...]
    """Sections to run (all by default)."""
    keep_work: bool
    """Keep the raw Tune runs and Parquet under ``out/work``."""


def parse_args(argv: Sequence[str] | None) -> BenchConfig:
    parser = argparse.ArgumentParser(
        prog="benchmarks/run.py", description=(__doc__ or "").splitlines()[0]
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--smoke", action="store_true", help="tiny sizes: checks every row runs")
    size.add_argument("--full", action="store_true", help="long version, runs the default sweep")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for bench.md and bench.json (default results/bench-<cpus>cpu-<GiB>gb, "
        "one per machine, committed like results/claims-<machine>)",
    )
    parser.add_argument(
        "--mlflow-venv",
        type=Path,
        default=Path(
            os.environ.get("MEMSWEEP_BENCH_MLFLOW_VENV", REPO / "results/bench/.venv-mlflow")
        ),
        help="virtualenv for MLflow, created on first use (default: results/bench/.venv-mlflow)",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=SECTION_ORDER,
        help="run only this section (repeatable); the table then has only its rows",
    )
    parser.add_argument("--keep-work", action="store_true", help="keep raw runs in OUT/work")
    args = parser.parse_args(argv)
    name = "smoke" if args.smoke else "full" if args.full else "default"
    return BenchConfig(
        profile=PROFILES[name],
        out=(args.out or REPO / "results" / f"bench-{machine_tag()}").resolve(),
        mlflow_venv=args.mlflow_venv.resolve(),
        only=tuple(args.only or SECTION_ORDER),
        keep_work=args.keep_work,
    )


@dataclass
class Outcome:
    rows: list[Row]
    details: dict[str, Any]
    failed: list[str]


def _guarded(
    outcome: Outcome, section: str, step: Callable[[], tuple[list[Row], dict[str, Any]]]
) -> None:
    """Run one section; a failure becomes an error row, and the others still run."""
    try:
        rows, details = step()
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        log(f"{section}: FAILED: {type(exc).__name__}: {exc}")
        outcome.failed.append(section)
        rows = [
            Row(
                key=f"{section}.error",
                section=section,
                figure=f"{section} section",
                tool="-",
                unit="",
                stat=None,
                status="error",
                note=f"{type(exc).__name__}: {str(exc)[:300]}",
            )
        ]
        details = {"error": f"{type(exc).__name__}: {exc}"}
    outcome.rows.extend(rows)
    outcome.details[section] = details


def run_sections(config: BenchConfig, work: Path) -> Outcome:
    import bench_answer
    import bench_attribution
    import bench_overhead
    import bench_peak
    import bench_sampler

    profile = config.profile
    outcome = Outcome([], {}, [])
    wanted = set(config.only)
    if "sampler" in wanted:
        _guarded(outcome, "sampler", lambda: bench_sampler.run(profile))
    with benchlib.private_ray_tmpdir():
        if wanted & {"overhead", "peak"}:
            import ray

            benchlib.start_local_ray()
            try:
                if "overhead" in wanted:
                    import bench_ab

                    _guarded(outcome, "overhead_ab", lambda: bench_ab.run(profile, work / "ab"))
                    _guarded(
                        outcome, "overhead", lambda: bench_overhead.run(profile, work / "overhead")
                    )
                if "peak" in wanted:
                    _guarded(
                        outcome,
                        "peak",
                        lambda: bench_peak.run(profile, work / "peak", config.mlflow_venv),
                    )
            finally:
                ray.shutdown()
        if "attribution" in wanted:
            _guarded(
                outcome,
                "attribution",
                lambda: bench_attribution.run(profile, work / "attribution"),
            )
        if "answer" in wanted:
            _guarded(outcome, "answer", lambda: bench_answer.time_to_answer(profile, work))
    if "driver" in wanted:
        import bench_driver

        _guarded(outcome, "driver", lambda: bench_driver.run(profile, work / "driver"))
    if "compaction" in wanted:
        import bench_compact

        _guarded(outcome, "compaction", lambda: bench_compact.run(profile, work))
    if "analysis" in wanted:
        _guarded(
            outcome,
            "analysis",
            lambda: bench_answer.analysis_speed(profile, work),
        )
    if "growth" in wanted:
        import bench_growth

        _guarded(outcome, "growth", lambda: bench_growth.run(profile))
    if "accuracy" in wanted:
        import bench_accuracy

        _guarded(outcome, "accuracy", lambda: bench_accuracy.run(profile))
    # Sampler rows come from two sections; show them together, sections in order.
    order = {s: i for i, s in enumerate(SECTION_ORDER)}
    outcome.rows.sort(key=lambda r: order.get(r.section, len(order)))
    return outcome


def markdown(config: BenchConfig, machine: dict[str, Any], rows: list[Row], wall_s: float) -> str:
    packages = ", ".join(f"{k} {v}" for k, v in machine["packages"].items() if v)
    load = machine["load_average_start"][0], machine["load_average_end"][0]
    lines = [
        f"# memsweep benchmark ({config.profile.name})",
        "",
        f"- date: {machine['date']}, wall time {wall_s / 60:.1f} min",
        f"- machine: {machine['cpu_model']}, {machine['logical_cores']} cores, "
        f"{machine['memory_bytes'] / 2**30:.0f} GiB RAM, {machine['platform']}",
        f"- load average (1 min) at start / end: {load[0]:.1f} / {load[1]:.1f} "
        "(other work on the machine makes node-wide figures and throughput noisy)",
        f"- Python {machine['python']}; {packages}",
        f"- sections run: {', '.join(config.only)}"
        + (
            ""
            if set(config.only) == set(SECTION_ORDER)
            else f" (not run: {', '.join(s for s in SECTION_ORDER if s not in config.only)})"
        ),
        "",
        "Figures are medians over repeats with [min–max] and the number of repeats; ratios "
        "compare figures measured in the same run. `MISSED` marks a goal memsweep does not "
        "reach on this run.",
        "",
        benchlib.render_markdown(rows),
        "",
        "How: (1) the default sweep's base point (DQN) for a fixed number of iterations, one "
        "Tune run per variant, variants interleaved across repeats; steps/s from the first to "
        "the last result. (1b) `SamplerCore` alone on N idle processes, and the `NodeSampler` "
        "actor's own samples in the memsweep runs and over the driver section's whole default "
        "sweep. (2) one Tune trial per spike, the spike at "
        "a random moment, all tools watching the same trials; the truth is the process's own "
        "VmRSS before and after allocating. (3) `memsweep run`'s code path on a two-node "
        "`ray.cluster_utils.Cluster`; the truth is each trial's reported pids. (4) "
        "`benchmarks/bench_analysis.py`. (5) `sweeps/default.yaml`. (6) a synthetic sweep's "
        "part files, compacted as a sweep does when it ends. (Driver) a `memsweep run` "
        "subprocess of `sweeps/default.yaml`, and beside it a process that only imports "
        "`ray.tune` and starts Ray (the floor). Details: the docstrings "
        "of `benchmarks/*.py`; every raw figure is in bench.json.",
        "",
    ]
    return "\n".join(lines)


def write(config: BenchConfig, outcome: Outcome, machine: dict[str, Any], wall_s: float) -> None:
    config.out.mkdir(parents=True, exist_ok=True)
    document = {
        "profile": asdict(config.profile),
        "machine": machine,
        "wall_s": wall_s,
        "failed_sections": outcome.failed,
        "rows": [row.as_json() for row in outcome.rows],
        "details": outcome.details,
    }
    (config.out / "bench.json").write_text(json.dumps(document, indent=2, default=str) + "\n")
    (config.out / "bench.md").write_text(markdown(config, machine, outcome.rows, wall_s))


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)  # argparse prints a bad argument and exits with code 2.
    started = time.perf_counter()
    machine = benchlib.machine_specs()
    work = config.out / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    log(f"profile {config.profile.name}; results in {config.out}")
    try:
        outcome = run_sections(config, work)
    finally:
        if not config.keep_work:
            shutil.rmtree(work, ignore_errors=True)
    wall_s = time.perf_counter() - started
    machine["load_average_end"] = os.getloadavg()
    write(config, outcome, machine, wall_s)
    print(benchlib.render_text(outcome.rows))
    print(
        f"\n{config.profile.name} run: {wall_s / 60:.1f} min; "
        f"written to {config.out}/bench.json, bench.md"
    )
    if outcome.failed:
        print(f"FAILED sections: {', '.join(outcome.failed)} (see their rows)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

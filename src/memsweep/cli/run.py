"""``memsweep run``: run a sweep (or a budget search) and print its per-trial summary."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from memsweep.cli.validate import machine_for, require_stop, warn
from memsweep.errors import SpecError
from memsweep.spec import load_study
from memsweep.spec.runtime import check_runtime, check_same_sweep

if TYPE_CHECKING:
    from memsweep.run.sweep import SweepOutcome


class RunCommand:
    help = "run a sweep on an embedded local Ray (or --address) and write its Parquet"

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("sweep", help="a sweep file, e.g. sweeps/default.yaml")
        parser.add_argument(
            "--storage", help="results location (path or s3://…); default from the sweep file"
        )
        parser.add_argument(
            "--address",
            default=os.environ.get("MEMSWEEP_RAY_ADDRESS"),
            help="join this Ray cluster instead of starting one",
        )
        parser.add_argument(
            "--resume", action="store_true", help="resume an interrupted sweep from its Tune state"
        )
        parser.add_argument(
            "--as-grid",
            action="store_true",
            help="budget search only: run the plain grid over the same candidates instead "
            "(results in <storage>-grid, grid.md), to compare trials and minutes",
        )

    def run(self, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
        study = load_study(args.sweep)
        check_runtime(study, args.sweep, machine_for(args.address), warn)
        if not args.resume and not args.as_grid and study.search.mode != "budget":
            storage = args.storage or study.storage_uri
            check_same_sweep(study, _study_text(storage), storage)
        from memsweep.run.rllib_check import check_study

        check_study(study, args.sweep)  # Imports RLlib only when the file needs it.
        require_stop(study, args.sweep)
        if args.as_grid and study.search.mode != "budget":
            raise SpecError(
                f"{args.sweep}: --as-grid runs the plain grid of a budget search, "
                f"but search.mode is {study.search.mode}: set search.mode: budget"
            )
        if study.search.mode == "budget":
            from memsweep.budget.app import run_budget

            outcome = run_budget(
                study,
                storage=args.storage,
                resume=args.resume,
                address=args.address,
                source=args.sweep,
                as_grid=args.as_grid,
            )
        else:
            from memsweep.run.sweep import run_study

            outcome = run_study(
                study,
                storage=args.storage,
                resume=args.resume,
                address=args.address,
                source=args.sweep,
            )
        print_outcome(study.name, outcome)
        return 1 if outcome.num_errors else 0


def print_outcome(name: str, outcome: SweepOutcome) -> None:
    """The end-of-run summary: one line per trial, where the Parquet is, what to run next."""
    from memsweep.report.summary import (
        driver_peak_rss,
        format_driver_peak,
        format_summaries,
        trial_summaries,
    )
    from memsweep.store import open_results

    results = open_results(outcome.storage)
    summaries = trial_summaries(results)
    print()
    print(
        f"memsweep: {name}: {len(summaries)} trials, {outcome.num_errors} failed, "
        f"{outcome.seconds:.0f} s"
    )
    print(format_summaries(summaries))
    print(format_driver_peak(driver_peak_rss(results), _own_peak_rss()))
    uri = outcome.storage
    print(f"Parquet: {uri}/samples (per process), node_samples, progress, trials.parquet")
    print(f"Next: memsweep analyze {uri}")
    if outcome.report is not None:
        print()
        print(outcome.report)


def _own_peak_rss() -> int | None:
    """This process's peak RSS so far, bytes: the kernel's VmHWM (``ru_maxrss``, KiB on
    Linux); None where the platform does not keep it."""
    import resource
    import sys

    if not sys.platform.startswith("linux"):
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _study_text(storage: str) -> str | None:
    """The ``study.yaml`` already in a results location, or None (none, or unreadable)."""
    from memsweep.store import is_remote

    if is_remote(storage):
        from memsweep.errors import DataError
        from memsweep.store import open_results

        try:
            return open_results(storage).text("study.yaml")
        except (DataError, OSError):
            return None
    path = Path(storage) / "study.yaml"
    try:
        return path.read_text(encoding="utf-8") if path.is_file() else None
    except (OSError, UnicodeDecodeError):
        return None

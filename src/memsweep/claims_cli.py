"""``memsweep claims``: run the claim sweeps of ``sweeps/claims/`` and build the table.

``memsweep claims run`` runs each sweep into ``results/claims-<machine>/<sweep>/`` (a
sweep whose trials all ended is kept, an interrupted one is resumed, so the command can
be run again after a crash and loses only the trial that was running), then writes each
sweep's report and the claims table (``claims.md``, ``claims.json``, ``claims.png``).
``memsweep claims table FOLDER`` rebuilds the table from results already there (the
same as ``python -m memsweep.analyze claims FOLDER``).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from memsweep.errors import MemsweepError
from memsweep.spec import Study, load_study

CLAIMS_SWEEPS_DIR = Path("sweeps/claims")
BUDGET = "budget"
"""The budget search of ``sweeps/claims/budget.yaml``: run as a search into ``budget/``,
then as the plain grid it is compared with into ``budget-grid/``."""
ENDED = frozenset({"terminated", "error", "over_budget", "oom_killed"})
"""Trial statuses after which a trial will not run again."""


def machine_tag() -> str:
    """``2cpu-24gb``: what ``results/claims-<machine>`` is named after (CPUs, GiB of RAM)."""
    import psutil

    gib = round(psutil.virtual_memory().total / 2**30)
    return f"{os.cpu_count() or 0}cpu-{gib}gb"


def default_out() -> Path:
    return Path("results") / f"claims-{machine_tag()}"


def claim_sweep_files(folder: Path, only: list[str] | None) -> list[tuple[str, Path]]:
    """The claim sweeps to run, in the table's order; unknown ``--only`` names refused."""
    from memsweep.analyze.claims import CLAIM_SWEEPS

    names = [s.name for s in CLAIM_SWEEPS] + [BUDGET]
    for name in only or ():
        if name not in names:
            raise MemsweepError(f"--only {name}: not a claim sweep; choose from {', '.join(names)}")
    chosen = [n for n in names if not only or n in only]
    files = [(name, folder / f"{name}.yaml") for name in chosen]
    for _, file in files:
        if not file.is_file():
            raise MemsweepError(
                f"{file}: missing; the claim sweeps live in sweeps/claims/ (run from the "
                "repository root or pass --sweeps)"
            )
    return files


def sweep_state(study: Study, folder: Path) -> str:
    """``done`` (every trial ended), ``partial`` (a Tune experiment to resume) or ``new``."""
    from memsweep.store import open_results

    if not (folder / "trials.parquet").is_file():
        return "partial" if (folder / "tune").is_dir() else "new"
    trials = open_results(folder).table("trials", ["trial_id", "status"]).to_pylist()
    ended = sum(1 for row in trials if row.get("status") in ENDED)
    if ended >= len(study.points()):
        return "done"
    return "partial" if (folder / "tune").is_dir() else "new"


class ClaimsCommand:
    help = "run the claim sweeps (sweeps/claims/) and build the claims table"

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="claims_command", metavar="ACTION", required=True)
        run = sub.add_parser("run", help="run the sweeps (skip finished ones), then the table")
        run.add_argument(
            "--out",
            type=Path,
            default=None,
            help="results folder (default results/claims-<cpus>cpu-<GiB>gb)",
        )
        run.add_argument(
            "--only", action="append", metavar="SWEEP", help="run only this sweep (repeatable)"
        )
        run.add_argument(
            "--sweeps", type=Path, default=CLAIMS_SWEEPS_DIR, help="folder of the sweep files"
        )
        run.add_argument(
            "--rerun",
            action="store_true",
            help="run every sweep again, none kept (the --out folder must not hold them yet)",
        )
        table = sub.add_parser("table", help="build the table from results already there")
        table.add_argument("folder", type=Path, nargs="?", default=None)

    def run(self, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
        if args.claims_command == "table":
            return write_table(args.folder or default_out())
        out: Path = args.out or default_out()
        failed = 0
        for name, file in claim_sweep_files(args.sweeps, args.only):
            study = load_study(file)
            if name == BUDGET:
                failed += run_budget(study, file, out)
                continue
            folder = out / name
            state = "new" if args.rerun else sweep_state(study, folder)
            if args.rerun and folder.exists():
                raise MemsweepError(
                    f"--rerun: {folder} exists; move it aside first (nothing is overwritten)"
                )
            if state == "done":
                print(f"memsweep claims: {name}: finished earlier, kept ({folder})")
                continue
            print(f"memsweep claims: {name}: {'resuming' if state == 'partial' else 'running'}")
            from memsweep.sweep import run_study

            outcome = run_study(
                study, storage=str(folder), resume=state == "partial", source=str(file)
            )
            failed += outcome.num_errors
        code = write_table(out, reports=True)
        return code or (1 if failed else 0)


def run_budget(study: Study, file: Path, out: Path) -> int:
    """The budget search, then the plain grid over the same candidates; each is kept
    once it has written its summary. Returns the number of failed trials."""
    from memsweep.sweep import run_study

    failed = 0
    for as_grid, summary in (
        (False, out / BUDGET / "budget.json"),
        (True, out / f"{BUDGET}-grid" / "grid.json"),
    ):
        what = "the plain grid" if as_grid else "the budget search"
        if summary.is_file():
            print(f"memsweep claims: {what}: finished earlier, kept ({summary.parent})")
            continue
        if summary.parent.exists():
            raise MemsweepError(
                f"{summary.parent}: an interrupted {what} (a budget search cannot resume): "
                "move the folder aside and run again"
            )
        print(f"memsweep claims: running {what}")
        outcome = run_study(study, storage=str(out / BUDGET), source=str(file), as_grid=as_grid)
        failed += outcome.num_errors
    return failed


def write_table(folder: Path, reports: bool = False) -> int:
    from memsweep.analyze.claims import print_and_write

    return print_and_write(folder, reports=reports)


def commands() -> dict[str, ClaimsCommand]:
    return {"claims": ClaimsCommand()}

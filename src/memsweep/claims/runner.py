"""``memsweep claims``: run the claim sweeps of ``sweeps/claims/`` and build the table.

``memsweep claims run`` runs each sweep into ``results/claims-<machine>/<sweep>/`` (a
sweep whose trials all ended is kept, an interrupted one is resumed, so the command can
be run again after a crash and loses only the trial that was running), then writes each
sweep's report and the claims table (``claims.md``, ``claims.json``, ``claims.png``).
``memsweep claims table FOLDER`` rebuilds the table from results already there (the
same as ``python -m memsweep.analyze claims FOLDER``).
"""

from __future__ import annotations

import os
from pathlib import Path

from memsweep import result_keys as keys
from memsweep.errors import MemsweepError
from memsweep.spec import Study, load_study

CLAIMS_SWEEPS_DIR = Path("sweeps/claims")
BUDGET = "budget"
"""The budget search of ``sweeps/claims/budget.yaml``: run as a search into ``budget/``,
then as the plain grid it is compared with into ``budget-grid/``."""
ENDED = keys.ENDED
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
    from memsweep.claims.rows import CLAIM_SWEEPS

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


def run_claims(out: Path, sweeps: Path, only: list[str] | None, *, rerun: bool = False) -> int:
    """Run each claim sweep into ``out/<sweep>`` (keeping finished ones, resuming
    interrupted ones unless ``rerun``), then write the reports and the table. Returns the
    exit code: 1 when a trial failed."""
    failed = 0
    for name, file in claim_sweep_files(sweeps, only):
        study = load_study(file)
        if name == BUDGET:
            failed += run_budget(study, file, out)
            continue
        folder = out / name
        state = "new" if rerun else sweep_state(study, folder)
        if rerun and folder.exists():
            raise MemsweepError(
                f"--rerun: {folder} exists; move it aside first (nothing is overwritten)"
            )
        if state == "done":
            print(f"memsweep claims: {name}: finished earlier, kept ({folder})")
            continue
        print(f"memsweep claims: {name}: {'resuming' if state == 'partial' else 'running'}")
        from memsweep.run.sweep import run_study

        outcome = run_study(study, storage=str(folder), resume=state == "partial", source=str(file))
        failed += outcome.num_errors
    code = write_table(out, reports=True)
    return code or (1 if failed else 0)


def run_budget(study: Study, file: Path, out: Path) -> int:
    """The budget search, then the plain grid over the same candidates; each is kept
    once it has written its summary. Returns the number of failed trials."""
    from memsweep.budget.app import run_budget as run_budget_search
    from memsweep.budget.report import grid_storage

    failed = 0
    for as_grid, summary in (
        (False, out / BUDGET / "budget.json"),
        (True, Path(grid_storage(str(out / BUDGET))) / "grid.json"),
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
        outcome = run_budget_search(
            study, storage=str(out / BUDGET), source=str(file), as_grid=as_grid
        )
        failed += outcome.num_errors
    return failed


def write_table(folder: Path, reports: bool = False) -> int:
    from memsweep.claims.render import print_and_write

    return print_and_write(folder, reports=reports)

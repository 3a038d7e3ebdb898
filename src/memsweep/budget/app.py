"""The budget search as an application on top of a sweep.

:func:`run_budget` runs a ``search: {mode: budget}`` study through
:func:`memsweep.run.sweep.run_study` with its own searcher and stopper, one trial at a
time, then writes ``budget.json``/``budget.md``. With ``as_grid`` it runs the plain grid
over the same candidates instead (in ``<storage>-grid``), writing ``grid.json``/``grid.md``
to compare trials and minutes with.
"""

from __future__ import annotations

import time

from memsweep import result_keys as keys
from memsweep.budget.report import (
    budget_report,
    grid_comparison_study,
    grid_report,
    grid_storage,
)
from memsweep.budget.search import BudgetStopper, make_search
from memsweep.errors import MemsweepError, SpecError
from memsweep.run.sweep import SweepOutcome, run_study
from memsweep.spec import Study
from memsweep.store import ResultsWriter, open_results


def run_budget(
    study: Study,
    *,
    storage: str | None = None,
    address: str | None = None,
    source: str = "",
    as_grid: bool = False,
    resume: bool = False,
) -> SweepOutcome:
    """Run a budget study's search (or, ``as_grid``, its plain grid); the outcome's
    ``report`` is the text also written to the results folder. Raises
    :class:`~memsweep.errors.SpecError` for a study that is not a budget search and
    :class:`~memsweep.errors.MemsweepError` for ``resume`` (the searcher's state is not
    saved)."""
    if study.search.mode != "budget":
        raise SpecError(
            f"{source or study.name}: --as-grid runs the plain grid of a budget search, "
            f"but search.mode is {study.search.mode}: set search.mode: budget"
        )
    if resume:
        raise MemsweepError(
            f"{source or study.name}: a budget search cannot resume (its searcher's state is "
            "not saved); run it again"
        )
    started = time.time()
    search, stopper, _ = make_search(study)
    if as_grid:
        grid = grid_comparison_study(study)
        uri = grid_storage(storage) if storage else grid.storage_uri
        outcome = run_study(
            grid,
            storage=uri,
            address=address,
            source=source,
            extra_stopper=BudgetStopper(stopper.state, projection=False),
            max_concurrent_trials=1,
        )
        rows = open_results(uri).table("trials").to_pylist()
        # Trials the budget stopped are the grid's data, not failures.
        errors = sum(
            1 for row in rows if row.get("status") not in (keys.TERMINATED, keys.OVER_BUDGET)
        )
        summary = grid_report(study, rows, (time.time() - started) / 60)
        report = summary.text()
        writer = ResultsWriter(uri)
        writer.write_text("grid.json", summary.as_json())
        writer.write_text("grid.md", f"# Plain grid: {grid.name}\n\n```\n{report}\n```\n")
    else:
        uri = storage or study.storage_uri
        outcome = run_study(
            study,
            storage=uri,
            address=address,
            source=source,
            search_alg=search,
            extra_stopper=stopper,
            # A budget search proposes each trial from every earlier result.
            max_concurrent_trials=1,
        )
        errors = outcome.num_errors
        found = budget_report(study, search, (time.time() - started) / 60)
        report = found.text()
        writer = ResultsWriter(uri)
        writer.write_text("budget.json", found.as_json())
        writer.write_text("budget.md", found.markdown())
    return SweepOutcome(
        storage=outcome.storage,
        num_trials=outcome.num_trials,
        num_errors=errors,
        seconds=time.time() - started,
        report=report,
    )

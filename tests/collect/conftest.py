"""The ``fault`` fixture: a fault test's row of the fault table (docs/faults.md, README)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from memsweep.testing.faults_table import FaultCase, FaultRow, load_rows, merge_row

FAULTS_JSON = Path(__file__).resolve().parents[2] / "docs" / "faults.json"


@pytest.fixture
def fault(request: pytest.FixtureRequest) -> Iterator[Callable[..., None]]:
    """Call ``fault(case, **figures)`` as a fault test's last statement (so only a test
    that got there records): ``case`` is a key of the test module's ``FAULT_CASES``,
    ``figures`` the formatted figures its text's placeholders name.

    With ``MEMSWEEP_FAULTS_OUT=FILE`` (``make faults-doc``) the row is merged into FILE;
    otherwise the committed ``docs/faults.json`` must hold the case with the same text,
    else the test fails saying to regenerate the table."""
    cases: dict[str, FaultCase] = request.module.FAULT_CASES
    recorded: list[tuple[str, dict[str, str]]] = []

    def record(case: str, **figures: str) -> None:
        assert case in cases, f"{case} is not in FAULT_CASES"
        recorded.append((case, figures))

    yield record
    name = request.node.originalname
    slow = (name,) if request.node.get_closest_marker("slow") else ()
    out = os.environ.get("MEMSWEEP_FAULTS_OUT")
    committed = {row.case: row for row in load_rows(FAULTS_JSON)}
    for case, figures in recorded:
        order = list(cases).index(case)
        row = FaultRow(case, order, cases[case], (name,), slow, figures)
        if out:
            merge_row(Path(out), row)
            continue
        stored = committed.get(case)
        if stored is None or stored.text != cases[case]:
            pytest.fail(
                f"docs/faults.json does not say what {name} declares for fault case "
                f"{case!r}: run `make faults-doc` and commit docs/faults.json, "
                "docs/faults.md and README.md"
            )

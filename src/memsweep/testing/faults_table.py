"""The fault table of ``docs/faults.md`` and the README, generated from the fault tests.

Each fault test in ``tests/collect/test_faults.py`` names its case (a key of that
module's ``FAULT_CASES``: the fault tried, what the user sees, what survives on disk,
what is lost, with ``{name}`` placeholders for the figures it measures) and records the
figures it measured through the ``fault`` fixture. With ``MEMSWEEP_FAULTS_OUT=FILE`` the
fixture merges the passed test's row into ``FILE``; ``make faults-doc`` runs the fault
tests that way into ``docs/faults.json`` and then renders the tables from it
(``python -m memsweep.testing.faults_table docs/faults.json``). Without the variable the
fixture checks that the committed row still says what the test declares (so a changed
claim fails until the table is regenerated), and ``tests/docs/test_faults_doc.py``
checks that the committed tables are this module's rendering of ``docs/faults.json``.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

DOC_BEGIN = "<!-- faults: generated from docs/faults.json by make faults-doc -->"
DOC_END = "<!-- /faults -->"


@dataclass(frozen=True)
class FaultCase:
    """One row of the fault table, as its tests declare it. Texts are Markdown; a
    ``{name}`` is filled with the figure of that name a test recorded."""

    fault: str
    """The fault tried, how it was staged."""
    sees: str
    """What the user sees."""
    survives: str
    """What is on disk afterwards."""
    lost: str
    """What is lost."""
    readme: tuple[str, str, str] | None = None
    """(fault, what survives, what is lost) for the README's short table; None: not there."""


@dataclass(frozen=True)
class FaultRow:
    """A case with the tests that recorded it and the figures they measured."""

    case: str
    order: int
    """Position in ``FAULT_CASES``."""
    text: FaultCase
    tests: tuple[str, ...]
    """Test function names that passed and recorded the case."""
    slow: tuple[str, ...] = ()
    """Those of them marked slow (real Ray)."""
    figures: dict[str, str] = field(default_factory=dict)


def load_rows(path: Path) -> list[FaultRow]:
    """The rows of a faults JSON file (written by the tests), in table order."""
    data = json.loads(path.read_text()) if path.exists() else {}
    rows = []
    for case, row in data.items():
        readme = row["text"].get("readme")
        text = FaultCase(**{**row["text"], "readme": tuple(readme) if readme else None})
        rows.append(
            FaultRow(
                case=case,
                order=int(row["order"]),
                text=text,
                tests=tuple(row["tests"]),
                slow=tuple(row.get("slow", ())),
                figures=dict(row.get("figures", {})),
            )
        )
    return sorted(rows, key=lambda r: r.order)


def merge_row(path: Path, row: FaultRow) -> None:
    """Add ``row`` to the faults JSON at ``path``: its text replaces the stored one, its
    test joins the stored tests, its figures replace those of the same name."""
    data = json.loads(path.read_text()) if path.exists() else {}
    old = data.get(row.case, {})
    tests = sorted(set(old.get("tests", [])) | set(row.tests))
    slow = sorted(set(old.get("slow", [])) | set(row.slow))
    data[row.case] = {
        "order": row.order,
        "text": asdict(row.text),
        "tests": tests,
        "slow": slow,
        "figures": {**old.get("figures", {}), **row.figures},
    }
    ordered = dict(sorted(data.items(), key=lambda kv: kv[1]["order"]))
    path.write_text(json.dumps(ordered, indent=1, ensure_ascii=False) + "\n")


NOT_MEASURED = "(not measured: its test did not pass when this table was made)"


def _fill(template: str, figures: dict[str, str], case: str) -> str:
    def value(match: re.Match[str]) -> str:
        return figures.get(match.group(1), NOT_MEASURED)

    return re.sub(r"\{(\w+)\}", value, template)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def doc_table(rows: list[FaultRow]) -> str:
    """``docs/faults.md``'s table: every case, its figures filled in, and its tests."""
    lines = [
        DOC_BEGIN,
        "| fault tried | what the user sees | what survives on disk | what is lost | test |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        cells = [
            _fill(t, row.figures, row.case)
            for t in (row.text.fault, row.text.sees, row.text.survives, row.text.lost)
        ]
        tests = (
            ", ".join(f"*slow* `{name}`" if name in row.slow else f"`{name}`" for name in row.tests)
            or "none passed when this table was made"
        )
        lines.append("| " + " | ".join(_cell(c) for c in [*cells, tests]) + " |")
    lines.append(DOC_END)
    return "\n".join(lines)


def readme_table(rows: list[FaultRow]) -> str:
    """The README's short table: the cases that have a ``readme`` line."""
    lines = [
        DOC_BEGIN,
        "| fault tried | what survives | what is lost |",
        "| --- | --- | --- |",
    ]
    for row in rows:
        if row.text.readme is not None:
            cells = [_fill(t, row.figures, row.case) for t in row.text.readme]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    lines.append(DOC_END)
    return "\n".join(lines)


def replace_block(document: str, block: str) -> str:
    """``document`` with its generated block (between the markers) replaced by ``block``."""
    start, end = document.index(DOC_BEGIN), document.index(DOC_END) + len(DOC_END)
    return document[:start] + block + document[end:]


def current_block(document: str) -> str:
    """The generated block of ``document``, markers included."""
    start, end = document.index(DOC_BEGIN), document.index(DOC_END) + len(DOC_END)
    return document[start:end]


def add_unrecorded(path: Path, cases: dict[str, FaultCase]) -> list[str]:
    """Cases of ``cases`` that no passing test recorded in ``path``, added there with
    their text and no test, so the table says so instead of dropping the row."""
    rows = {row.case for row in load_rows(path)}
    missing = [case for case in cases if case not in rows]
    for case in missing:
        merge_row(path, FaultRow(case, list(cases).index(case), cases[case], ()))
    return missing


def declared_cases(test_file: Path) -> dict[str, FaultCase]:
    """``FAULT_CASES`` of the fault tests' module, imported from its file."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("memsweep_fault_tests", test_file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cases: dict[str, FaultCase] = module.FAULT_CASES
    return cases


def main(argv: list[str] | None = None) -> int:
    """``python -m memsweep.testing.faults_table FAULTS_JSON [FAULT_TESTS]``: add the
    cases of FAULT_TESTS' ``FAULT_CASES`` that no passing test recorded, then rewrite
    the tables of ``docs/faults.md`` and ``README.md`` (beside FAULTS_JSON's folder)."""
    args = sys.argv[1:] if argv is None else argv
    source = Path(args[0] if args else "docs/faults.json")
    repo = source.resolve().parents[1]
    if len(args) > 1:
        for case in add_unrecorded(source, declared_cases(Path(args[1]))):
            print(f"fault case {case}: no passing test recorded it; its row says so")
    rows = load_rows(source)
    doc, readme = repo / "docs" / "faults.md", repo / "README.md"
    doc.write_text(replace_block(doc.read_text(), doc_table(rows)))
    readme.write_text(replace_block(readme.read_text(), readme_table(rows)))
    print(f"{len(rows)} fault cases from {source} into {doc} and {readme}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

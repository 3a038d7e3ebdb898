"""The README's benchmark table, generated from the committed ``make bench`` run.

Every row of ``results/bench-2cpu-24gb/bench.json`` that has a goal, with its measured
figure, the goal and whether this run met it, and the row's note; a line above says when
and under what load the run was made. ``tests/docs/test_readme.py`` checks that the
README holds exactly this block, so a README figure is always one the committed run
measured. After a new ``make bench`` on the reference machine::

    python benchmarks/readme_block.py        # rewrites the block in README.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from benchlib import REPO, SECTIONS, Row, Stat, format_ratio, format_stat

BENCH = REPO / "results" / "bench-2cpu-24gb" / "bench.json"
"""The reference machine's committed run (2 cores, 24 GiB: the machine CI runs on)."""
START = (
    "<!-- bench: generated from results/bench-2cpu-24gb/bench.json by "
    "`python benchmarks/readme_block.py` -->"
)
END = "<!-- /bench -->"


def _stat(data: dict[str, Any] | None) -> Stat | None:
    if data is None:
        return None
    return Stat(data["median"], data["low"], data["high"], data["n"], tuple(data["values"]))


def render(document: dict[str, Any]) -> str:
    """The block (without its markers) for one ``bench.json`` document."""
    machine = document["machine"]
    load = machine["load_average_start"][0], machine["load_average_end"][0]
    lines = [
        f"Run {machine['date'][:16].replace('T', ' ')} UTC ({document['profile']['name']} "
        f"profile, {document['wall_s'] / 60:.0f} min), {machine['cpu_model']}, "
        f"{machine['logical_cores']} cores, {machine['memory_bytes'] / 2**30:.0f} GiB, load "
        f"average {load[0]:.1f} at the start and {load[1]:.1f} at the end; every row with a "
        "goal (the full table: [`results/bench-2cpu-24gb/bench.md`]"
        "(results/bench-2cpu-24gb/bench.md)):",
        "",
        "| section | figure | measured | goal | status | note |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in document["rows"]:
        if not row["goal"] or row["status"] not in {"met", "MISSED"}:
            continue
        status = "**MISSED**" if row["status"] == "MISSED" else "met"
        measured = format_stat(_stat(row["stat"]), row["unit"])
        ratio = format_ratio(Row(**{**row, "stat": _stat(row["stat"])}))
        cells = (
            SECTIONS.get(row["section"], row["section"]),
            row["figure"],
            f"{measured}; {ratio}" if ratio else measured,
            row["goal"],
            status,
            row["note"],
        )
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    if document["failed_sections"]:
        lines += [
            "",
            f"Sections that failed in this run: {', '.join(document['failed_sections'])}.",
        ]
    return "\n".join(lines)


def block(bench: Path = BENCH) -> str:
    """The block with its markers, from ``bench``."""
    return f"{START}\n{render(json.loads(bench.read_text()))}\n{END}"


def main() -> int:
    readme = REPO / "README.md"
    text = readme.read_text()
    if START not in text or END not in text:
        print(f"README.md has no {START} … {END} block to rewrite", file=sys.stderr)
        return 2
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    readme.write_text(head + block() + tail)
    return 0


if __name__ == "__main__":
    sys.exit(main())

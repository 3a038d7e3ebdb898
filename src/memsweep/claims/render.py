"""The claims table written out: ``claims.md``, ``claims.json``, ``claims.png``, and the text printed."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from memsweep.analyze.analysis import AnalysisOptions
from memsweep.claims.build import build_claims
from memsweep.claims.table import ABOUT, NEGLIGIBLE, ClaimsTable, point_text
from memsweep.claims.verdicts import span_text
from memsweep.units import Estimate, format_bytes, format_level, format_number, json_ready


def _value_text(estimate: Estimate | None, unit: str) -> str:
    if estimate is None:
        return ""
    if unit.startswith("bytes per transition"):
        return f"{format_number(estimate.value)} B/transition ({format_number(estimate.low)} – {format_number(estimate.high)})"
    suffix = " per env runner" if unit.endswith("per env runner") else ""
    if estimate.low == estimate.high:
        return f"{format_bytes(estimate.value)}{suffix}"
    return f"{format_bytes(estimate.value, signed=True)}{suffix} ({span_text(estimate)})"


def machine_text(machine: Mapping[str, Any]) -> str:
    packages = machine.get("packages") or {}
    memory = machine.get("memory_bytes")
    parts = [
        f"{machine.get('cpus', '?')} CPUs",
        f"{format_bytes(memory)} RAM" if isinstance(memory, int | float) else "? RAM",
        str(machine.get("platform", "?")),
        f"Python {machine.get('python', '?')}",
    ]
    parts += [
        f"{name} {packages[name]}"
        for name in ("ray", "torch", "tensorflow", "gymnasium", "ale-py")
        if packages.get(name)
    ]
    return ", ".join(parts)


def to_markdown(table: ClaimsTable, plots: Sequence[str] = ()) -> str:
    level = next(iter(table.sweeps)).analysis.options.confidence if table.sweeps else 0.95
    lines = [
        "# Claims about RL training memory, measured",
        "",
        f"Machine: {machine_text(table.machine)}. Run: {table.machine.get('created', '?')}.",
        "",
        "Memory is a trial's plateau (buffer full): PSS summed over its processes (trainable "
        f'and env runners). Intervals are {format_level(level)}. "At the claim\'s scale" carries the '
        "fitted model beyond what was measured where marked: an extrapolation, not a "
        'measurement. Verdict rules: `memsweep/claims/verdicts.py` (a figure is "about" '
        f"right within ±{ABOUT:.0%}; a direction needs its whole interval on the claimed side "
        f"and more than {NEGLIGIBLE:.0%} of a process's memory).",
        "",
        "| claim | measured here | at the claim's scale | verdict | why |",
        "|---|---|---|---|---|",
    ]
    for row in table.rows:
        measured = _value_text(row.estimate, row.unit)
        if row.measured:
            measured = f"{measured}<br>{row.measured}" if measured else row.measured
        if row.growth:
            measured += f"<br>**grows**: {row.growth}"
        scale = ""
        if row.at_scale is not None:
            scale = f"{format_bytes(row.at_scale.value)} ({span_text(row.at_scale)}) at {row.scale}"
            if row.extrapolation:
                scale += f"<br>**extrapolated**: {row.extrapolation}"
        cells = [row.claim, measured, scale, f"**{row.verdict}**", row.why]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    if table.notes:
        lines += [""] + [f"Note: {note}" for note in table.notes]
    lines += ["", "## Sweeps", "", "| sweep | trials | minutes | report |", "|---|---|---|---|"]
    for sweep in table.sweeps:
        lines.append(
            f"| `sweeps/claims/{sweep.name}.yaml` | {len(sweep.analysis.trials)} | "
            f"{sweep.minutes:.1f} | [{sweep.name}/analysis/report.md]({sweep.name}/analysis/report.md) |"
        )
    if table.budget is not None:
        budget = table.budget.search
        lines += [
            "",
            f"## What fits {format_bytes(budget.get('budget_bytes'))}? (`sweeps/claims/budget.yaml`)",
            "",
            f"The largest {', '.join(budget.get('maximize', {}))} whose trial's peak (Σ VmHWM "
            f"of its processes) stays under {format_bytes(budget.get('budget_bytes'))}, "
            f"other factors fixed at {point_text(budget.get('fixed')) or 'their one value'}: "
            f"{budget.get('conclusion', '')}. Details: [budget/budget.md](budget/budget.md), "
            "[budget-grid/grid.md](budget-grid/grid.md).",
            "",
            "| method | answer | its trial's peak | the step above | trials | minutes |",
            "|---|---|---|---|---|---|",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in table.budget.rows()]
    if table.missing:
        lines += ["", "Not measured:", ""] + [f"- {m}" for m in table.missing]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def write_claims(table: ClaimsTable, folder: Path | None = None) -> list[Path]:
    """``claims.md``, ``claims.json`` and ``claims.png`` in ``folder`` (default: the root)."""
    from memsweep.claims.plot import claims_figure

    out = folder or Path(table.root)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    figure = claims_figure(table, out / "claims.png")
    plots = [figure.name] if figure else []
    markdown = out / "claims.md"
    markdown.write_text(to_markdown(table, plots), encoding="utf-8")
    document = {
        "root": table.root,
        "machine": table.machine,
        "rows": [row.to_json() for row in table.rows],
        "sweeps": [
            {"name": s.name, "trials": len(s.analysis.trials), "minutes": s.minutes}
            for s in table.sweeps
        ],
        "missing": list(table.missing),
        "notes": list(table.notes),
        "budget": (
            {"search": table.budget.search, "grid": table.budget.grid} if table.budget else None
        ),
    }
    data = out / "claims.json"
    data.write_text(
        json.dumps(json_ready(document), indent=1, allow_nan=False, default=str), encoding="utf-8"
    )
    written += [markdown, data] + ([figure] if figure else [])
    return written


def claims_text(table: ClaimsTable) -> str:
    """The plain table ``memsweep claims`` prints."""
    lines = []
    for row in table.rows:
        lines.append(f"{row.claim}")
        value = _value_text(row.estimate, row.unit)
        if value:
            lines.append(f"    measured: {value}  [{row.measured}]")
        if row.at_scale is not None:
            flag = f"  EXTRAPOLATED {row.extrapolation}" if row.extrapolation else ""
            lines.append(
                f"    at {row.scale}: {format_bytes(row.at_scale.value)} ({span_text(row.at_scale)}){flag}"
            )
        if row.growth:
            lines.append(f"    grows: {row.growth}")
        lines.append(f"    verdict: {row.verdict.upper()}: {row.why}")
    if table.budget is not None:
        lines.append(f"What fits {format_bytes(table.budget.search.get('budget_bytes'))}?")
        for method, answer, peak, above, trials, minutes in table.budget.rows():
            lines.append(
                f"    {method}: {answer} (peak {peak}); above: {above}; {trials} trials, "
                f"{minutes} min"
            )
    return "\n".join(lines)


def print_and_write(
    folder: Path, options: AnalysisOptions | None = None, reports: bool = False
) -> int:
    """Analyse the sweeps under ``folder``, print the table, write its files (CLI step)."""
    table = build_claims(folder, options, write_reports=reports)
    print(claims_text(table))
    written = write_claims(table)
    print(f"claims table: {written[0]} (also {', '.join(p.name for p in written[1:])})")
    return 0

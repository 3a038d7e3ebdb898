"""The analysis as people and tools read it: report.md, report.html, models.json, a summary.

The report is built once as blocks (:mod:`~memsweep.report.sections`, worded by
:mod:`~memsweep.report.headline`) and rendered twice (:mod:`~memsweep.report.blocks`);
``models.json`` comes from :mod:`~memsweep.report.models_json`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from memsweep.report.blocks import to_html, to_markdown
from memsweep.report.headline import headline
from memsweep.report.models_json import models_document
from memsweep.report.plots import write_plots
from memsweep.report.sections import report_blocks
from memsweep.store import is_remote

if TYPE_CHECKING:
    from memsweep.analyze.analysis import Analysis


@dataclass(frozen=True)
class ReportFiles:
    """What ``write_report`` wrote."""

    folder: Path
    markdown: Path
    html: Path
    models_json: Path
    plots: tuple[Path, ...]


def write_report(analysis: Analysis, folder: Path | None = None) -> ReportFiles:
    """Write ``analysis/`` (next to the results when they are local, else ``folder``)."""
    if folder is None:
        if is_remote(analysis.uri):
            raise ValueError("a remote results folder needs an explicit local output folder")
        folder = Path(analysis.uri) / "analysis"
    folder.mkdir(parents=True, exist_ok=True)
    plots = write_plots(analysis, folder)
    blocks = report_blocks(analysis, plots)
    markdown = folder / "report.md"
    markdown.write_text(to_markdown(blocks), encoding="utf-8")
    page = folder / "report.html"
    page.write_text(to_html(blocks, folder, f"memsweep: {analysis.name}"), encoding="utf-8")
    models = folder / "models.json"
    models.write_text(
        json.dumps(models_document(analysis), indent=1, allow_nan=False), encoding="utf-8"
    )
    return ReportFiles(folder, markdown, page, models, tuple(folder / p.name for p in plots))


def _ended_early(analysis: Analysis) -> list[str]:
    """One line per status other than ``terminated`` among the analysed trials, with the
    first such trial's error (``trials.parquet``): a sweep whose trials failed says so
    before any plateau or buffer is blamed."""
    by_status: dict[str, list[str]] = {}
    for trial in analysis.trials:
        status = str(trial.factors.get("status") or "unknown")
        if status != "terminated":
            by_status.setdefault(status, []).append(trial.trial_id)
    if not by_status:
        return []
    errors = analysis.data.trials.get("error")
    lines = []
    for status, ids in by_status.items():
        first = ids[0]
        error = errors.get(first) if errors is not None else None
        said = (
            f" ({first}: {str(error).splitlines()[0][:200]})"
            if isinstance(error, str) and error.strip()
            else ""
        )
        every = "every trial" if len(ids) == len(analysis.trials) else f"{len(ids)} trial(s)"
        lines.append(f"  ended {status}: {every}{said}; their figures stop where they ended")
    return lines


def summary_text(analysis: Analysis, files: ReportFiles | None = None) -> str:
    """The short plain-text summary the CLI prints."""
    reached = sum(t.plateau_reached for t in analysis.trials)
    lines = [
        f"{analysis.name}: {len(analysis.trials)} trials analysed ({reached} reached their "
        f"plateau), {analysis.data.sample_rows:,} sample rows in "
        f"{analysis.timings_s.get('analysis_s', math.nan):.1f} s",
    ]
    lines += [f"  {line}" for line in headline(analysis)]
    lines += _ended_early(analysis)
    if analysis.missing:
        lines.append(
            f"  missing ({len(analysis.missing)}): "
            + "; ".join(analysis.missing[:3])
            + (" …" if len(analysis.missing) > 3 else "")
        )
    for note in analysis.notes:
        lines.append(f"  note: {note}")
    for error in analysis.models.errors:
        lines.append(f"  not fitted: {error}")
    if files is not None:
        lines.append(
            f"report: {files.markdown} (also report.html, models.json, {len(files.plots)} plots)"
        )
    return "\n".join(lines)

"""The claims table's typed rows and sweeps: what the builder fills and the renderers read."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memsweep.analyze.analysis import Analysis
from memsweep.budget.report import grid_storage
from memsweep.errors import DataError
from memsweep.units import Estimate, format_bytes, format_number

ABOUT = 0.25
"""How far "about X" reaches: a figure within ±25 % of the interval is "about" right."""

NEGLIGIBLE = 0.01
"""A difference within ±1 % of the process's memory is no difference."""

PLATEAU = "plateau__total"
"""What every claim is about: a trial's memory once its buffer is full (sum of PSS)."""


@dataclass(frozen=True)
class ClaimRow:
    """One line of the table: a claim, what was measured here, and the verdict."""

    claim: str
    """The belief, in the words it is usually said in."""

    sweep: str
    """The sweep (``sweeps/claims/<sweep>.yaml``) that measured it."""

    verdict: str
    """``supported``, ``not supported``, ``inconclusive``, ``depends on …``, ``not measured``."""

    why: str
    """One sentence: the rule applied to these numbers."""

    measured: str = ""
    """What the estimate is, e.g. "bytes per stored transition"."""

    estimate: Estimate | None = None
    unit: str = ""
    """``bytes``, ``bytes per transition``, …: the unit of ``estimate``."""

    scale: str = ""
    """The scale the claim speaks of, e.g. "100k → 1M transitions"."""

    at_scale: Estimate | None = None
    """The measured quantity carried to that scale by the fitted model (bytes)."""

    extrapolation: str = ""
    """How far beyond the measured range ``at_scale`` reaches ("" when it does not)."""

    growth: str = ""
    """Where a process the claim compares keeps growing (sustained growth): its rate per 1M
    env steps, and that the level difference then depends on when the trials stopped
    ("" when nothing the row compares grows)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "claim": self.claim,
            "sweep": self.sweep,
            "measured": self.measured,
            "estimate": self.estimate.to_json() if self.estimate else None,
            "unit": self.unit,
            "scale": self.scale,
            "at_scale": self.at_scale.to_json() if self.at_scale else None,
            "extrapolation": self.extrapolation,
            "growth": self.growth,
            "verdict": self.verdict,
            "why": self.why,
        }


@dataclass(frozen=True)
class SweepFacts:
    """One claim sweep as analysed: its trial table and where its report is."""

    name: str
    analysis: Analysis = field(repr=False)
    minutes: float
    """Wall time from the first to the last sample."""


# --- Fitting and contrasts ---------------------------------------------------------------


@dataclass(frozen=True)
class ClaimSweep:
    """A sweep of ``sweeps/claims/`` and the rows it yields."""

    name: str
    rows: Callable[[SweepFacts], list[ClaimRow]]
    claims: tuple[str, ...]
    note: Callable[[SweepFacts], str] | None = None
    """A fact the table states under it (no interval, so not a row)."""


@dataclass(frozen=True)
class ClaimsTable:
    """Everything ``claims.md`` / ``claims.json`` show."""

    root: str
    rows: tuple[ClaimRow, ...]
    sweeps: tuple[SweepFacts, ...] = field(repr=False)
    machine: dict[str, Any]
    """Versions and machine facts of the first sweep (``versions.json``)."""

    missing: tuple[str, ...]
    """Sweeps not found or not analysable, with the reason."""

    budget: BudgetComparison | None = None
    """The budget search and its grid, when the folder has them."""

    notes: tuple[str, ...] = ()
    """Facts about the sweeps that are not claims (e.g. how well an additive model fits)."""


@dataclass(frozen=True)
class BudgetComparison:
    """The budget search (``budget/budget.json``) next to the plain grid over the same
    candidates (``budget-grid/grid.json``), as ``memsweep run … [--as-grid]`` wrote them."""

    search: dict[str, Any]
    grid: dict[str, Any] | None

    def rows(self) -> list[tuple[str, str, str, str, str, str]]:
        """(method, answer, its trial's peak, evidence above it, trials, minutes)."""
        search, out = self.search, []
        answer = search.get("answer") or {}
        above = search.get("next_step_trial") or {}
        evidence = ""
        if above:
            measured = format_bytes(above.get("peak_bytes"))
            projected = format_bytes(above.get("projected_bytes"))
            point = point_text(above.get("point"))
            evidence = (
                f"{point}: peak {measured}, projected {projected} at {above.get('fill', 0):.0%} "
                f"full ({above.get('stop_reason', '?')})"
            )
        out.append(
            (
                "budget search (Optuna + fitted line + early stop)",
                point_text(answer.get("point")) or "none",
                format_bytes(answer.get("peak_bytes")),
                evidence or str(search.get("conclusion", "")),
                str(len(search.get("trials", []))),
                f"{search.get('minutes', math.nan):.1f}",
            )
        )
        if self.grid is not None:
            over = [t for t in self.grid.get("trials", []) if not t.get("under")]
            first_over = min(over, key=lambda t: t.get("score", 0.0)) if over else None
            out.append(
                (
                    "plain grid over the same candidates",
                    point_text(self.grid.get("answer")) or "none",
                    format_bytes(self.grid.get("answer_peak_bytes")),
                    (
                        f"{point_text(first_over.get('point'))}: stopped as "
                        f"{first_over.get('status')} at {format_bytes(first_over.get('peak_bytes'))}"
                    )
                    if first_over
                    else "",
                    str(len(self.grid.get("trials", []))),
                    f"{self.grid.get('minutes', math.nan):.1f}",
                )
            )
        return out


def point_text(point: Any) -> str:
    if not isinstance(point, Mapping):
        return ""
    return ", ".join(
        f"{k}={format_number(float(v)) if isinstance(v, int | float) else v}"
        for k, v in point.items()
    )


def load_budget(root: Path) -> BudgetComparison | None:
    """The budget search's and its grid's summaries, if ``root`` has them."""
    search_file = root / "budget" / "budget.json"
    grid_file = Path(grid_storage(str(root / "budget"))) / "grid.json"
    if not search_file.is_file():
        return None
    try:
        search = json.loads(search_file.read_text(encoding="utf-8"))
        grid = json.loads(grid_file.read_text(encoding="utf-8")) if grid_file.is_file() else None
    except (OSError, ValueError) as exc:
        raise DataError(f"{search_file}: unreadable ({exc}); run the budget search again") from None
    return BudgetComparison(search, grid)

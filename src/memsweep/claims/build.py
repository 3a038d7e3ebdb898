"""The claims table: common beliefs about RL training memory, each turned into a number.

Each claim is tested by one (or two) of the sweeps in ``sweeps/claims/``; the sweeps'
results sit side by side under one folder (``results/claims-<machine>/<sweep>/``). For
each claim this module fits a small model chosen *for that claim* (not the automatic
form and interaction choice of :func:`~memsweep.analyze.models.fit_all`: a claim asks a
fixed question, so the question decides the terms), takes the quantity the claim is
about as a linear contrast of the fit, with its interval, and extrapolates it to the
scale the claim speaks of. Extrapolation is said as such, with how far it reaches.

The verdict rules are in :mod:`memsweep.claims.verdicts`; each claim's rows in
:mod:`memsweep.claims.rows`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from memsweep.analyze.analysis import Analysis, AnalysisOptions, analyze_results
from memsweep.claims.rows import CLAIM_SWEEPS, REPLAY_CLAIM, replay_summary
from memsweep.claims.table import (
    ClaimRow,
    ClaimsTable,
    SweepFacts,
    load_budget,
)
from memsweep.errors import DataError, MemsweepError
from memsweep.store import local_is, open_results


def _minutes(analysis: Analysis) -> float:
    trials = analysis.data.trials
    if trials["started_at"].notna().any() and trials["ended_at"].notna().any():
        span = pd.to_datetime(trials["ended_at"]).max() - pd.to_datetime(trials["started_at"]).min()
        return float(span.total_seconds()) / 60
    return math.nan


def build_claims(
    root: str | Path, options: AnalysisOptions | None = None, write_reports: bool = False
) -> ClaimsTable:
    """Analyse every claim sweep found under ``root`` and build the table.

    A sweep that is missing or cannot be analysed gives a ``not measured`` row naming
    the command that measures it, so a partial run still yields a table.
    """
    root_path = Path(root)
    if not local_is(str(root), Path.is_dir):
        raise DataError(f"{root}: no such folder; run the claim sweeps first: memsweep claims run")
    rows: list[ClaimRow] = []
    sweeps: list[SweepFacts] = []
    missing: list[str] = []
    notes: list[str] = []
    machine: dict[str, Any] = {}
    for spec in CLAIM_SWEEPS:
        folder = root_path / spec.name
        try:
            if not (folder / "study.yaml").is_file():
                raise DataError(f"{folder} does not exist")
            analysis = analyze_results(folder, options)
            if write_reports:
                from memsweep.report.document import write_report

                write_report(analysis)
            facts = SweepFacts(spec.name, analysis, _minutes(analysis))
            found = spec.rows(facts)
            if spec.note is not None:
                notes.append(spec.note(facts))
        except (MemsweepError, ValueError, KeyError, np.linalg.LinAlgError) as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            missing.append(f"{spec.name}: {reason}")
            rows += [_not_measured(claim, spec.name, reason) for claim in spec.claims]
            continue
        sweeps.append(facts)
        machine = machine or open_results(folder).versions()
        rows += found
        if spec.name == "replay_atari_lz4":
            summary = replay_summary([r for r in rows if r.claim.startswith(REPLAY_CLAIM)])
            if summary is not None:
                rows.append(summary)
    if not sweeps:
        raise DataError(
            f"{root}: none of the claim sweeps ({', '.join(s.name for s in CLAIM_SWEEPS)}) "
            f"could be analysed ({'; '.join(missing)}): run memsweep claims run"
        )
    return ClaimsTable(
        str(root),
        tuple(rows),
        tuple(sweeps),
        machine,
        tuple(missing),
        load_budget(root_path),
        tuple(notes),
    )


def _not_measured(claim: str, sweep: str, reason: str) -> ClaimRow:
    return ClaimRow(
        claim=claim,
        sweep=sweep,
        verdict="not measured",
        why=f"{reason}; run: memsweep claims run --only {sweep}",
    )


# --- Output --------------------------------------------------------------------------------

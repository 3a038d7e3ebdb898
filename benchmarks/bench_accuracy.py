"""Prediction accuracy on committed real sweeps (issue #13 item 8): not a timed test.

Every committed real sweep under ``results/`` (``reference-*/`` and ``claims-*/*/``) is
analysed; :mod:`memsweep.analyze.accuracy` then refits the analysis' own models on
subsets of its trials and predicts the trials left out, through the code path ``memsweep
analyze predict`` prints: **leave-one-out** (each trial by the models fitted on the
others) and **held out** (per numeric factor with ≥ 3 values, the trials at its largest
value by the models fitted below it: an extrapolation, as a user predicts a bigger run).

Rows, per scheme, for the plateau and the peak, in total and per role: the median
relative error |predicted − measured| ÷ measured (goal ≤ 5 %) and the under-prediction
rate, the share of trials measured above the prediction interval's upper bound (goal
≤ 5 %: that is the case that runs a node out of memory). Trials a scheme cannot predict
(alone at a factor value) are counted in the note.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from benchlib import REPO, Profile, Row, Stat, Timer, log

GOAL_MEDIAN_ERROR = 0.05
GOAL_UNDER_RATE = 0.05


def committed_sweeps(root: Path = REPO / "results") -> list[Path]:
    """Committed real sweeps: folders with a trials table under reference-* and claims-*."""
    found = [*root.glob("reference-*/trials.parquet"), *root.glob("claims-*/*/trials.parquet")]
    return sorted(p.parent for p in found)


def run(profile: Profile) -> tuple[list[Row], dict[str, Any]]:
    from memsweep.analyze import analyze_results
    from memsweep.analyze.accuracy import held_out, leave_one_out, summarise

    timer = Timer()
    cases: dict[tuple[str, str, str], list[Any]] = defaultdict(list)
    unpredicted: dict[str, int] = defaultdict(int)
    sweeps = committed_sweeps()
    if profile.name == "smoke":
        sweeps = [p for p in sweeps if p.name in ("reference-heldback", "workers")]
    details: dict[str, Any] = {"sweeps": [str(p.relative_to(REPO)) for p in sweeps]}
    for folder in sweeps:
        log(f"accuracy: {folder.relative_to(REPO)}")
        analysis = analyze_results(folder)
        for scheme_cases, missed in (leave_one_out(analysis), held_out(analysis)):
            for case in scheme_cases:
                scheme = "held out" if case.scheme.startswith("held out") else case.scheme
                cases[(scheme, case.quantity, case.role)].append(case)
            for miss in missed:
                unpredicted[miss.scheme.split(" (")[0]] += 1
    rows: list[Row] = []
    for (scheme, quantity, role), found in sorted(cases.items()):
        summary = summarise(found)
        key = f"accuracy.{scheme.replace(' ', '_').replace('-', '_')}.{quantity}.{role}"
        sweeps_in = len({c.sweep for c in found})
        note = (
            f"{summary.cases} predictions over {sweeps_in} sweeps; interval coverage "
            f"{summary.coverage:.0%}"
        )
        rows.append(
            Row(
                key=f"{key}.median_error",
                section="accuracy",
                figure=f"{scheme}: median |error| of the {quantity}, {role}",
                tool="memsweep.analyze",
                unit="fraction",
                stat=Stat.one(summary.median_abs_rel_error),
                goal=f"≤ {GOAL_MEDIAN_ERROR:.0%}",
                status="met" if summary.median_abs_rel_error <= GOAL_MEDIAN_ERROR else "MISSED",
                note=note,
            )
        )
        rows.append(
            Row(
                key=f"{key}.under_rate",
                section="accuracy",
                figure=f"{scheme}: under-predicted {quantity} (measured above the interval), {role}",
                tool="memsweep.analyze",
                unit="fraction",
                stat=Stat.one(summary.under_rate),
                goal=f"≤ {GOAL_UNDER_RATE:.0%}",
                status="met" if summary.under_rate <= GOAL_UNDER_RATE else "MISSED",
                note=note
                + (
                    f"; {unpredicted[scheme]} trial(s) this scheme could not predict "
                    "(alone at a factor value)"
                    if unpredicted.get(scheme)
                    else ""
                )
                + (
                    "; under: " + ", ".join(sorted(f"{c.sweep}/{c.trial_id}" for c in under))
                    if (under := [c for c in found if c.under])
                    else ""
                ),
            )
        )
        details[key] = {
            "cases": summary.cases,
            "median_abs_rel_error": summary.median_abs_rel_error,
            "under_rate": summary.under_rate,
            "coverage": summary.coverage,
            "errors": [c.rel_error for c in found],
        }
    details["unpredicted"] = dict(unpredicted)
    return rows, {**details, **timer.done()}

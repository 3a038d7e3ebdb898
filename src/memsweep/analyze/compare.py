"""Two runs side by side: per matching trial and role, what changed and by how much.

**Matching.** A trial of run A matches a trial of run B when they have the same factor
values (:attr:`~memsweep.analyze.phases.TrialPhases.factors`: ``factors_json`` where the
results have it, else the built-in factor columns), compared on the factor names both runs
know. Several trials with the same values in one run (repeats) are paired in the order of
``trials.parquet``. A trial without a partner is listed, never dropped silently.

**Figures** (per role and ``total``, from :func:`~memsweep.analyze.analysis.analyze_results`):
plateau (:attr:`RolePhases.plateau`, or the fill fit extrapolated to capacity when the buffer
never filled), peak (:attr:`RolePhases.peak_bytes`: one measurement, no interval), bytes per
transition (the fill slope :attr:`RolePhases.fill_bytes_per_transition`) and growth (the
late rate of the growth verdict, :attr:`GrowthFit.late_rate_bytes_per_step`, whose interval
holds the background creep).

**Difference.** ``B − A``. The two runs are independent measurements, so the interval's
lower and upper half-widths are the two runs' half-widths added in quadrature (B's lower
with A's upper, and the other way round), at the confidence both analyses used: an
approximation that is exact for normal estimates and conservative otherwise.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from memsweep.analyze.analysis import Analysis
from memsweep.analyze.phases import RolePhases, TrialPhases
from memsweep.errors import MemsweepError
from memsweep.units import Estimate

NOT_FACTORS = ("model_params", "obs_bytes", "status")
"""Keys of ``TrialPhases.factors`` that are measured, not set: never matched on."""

QUANTITIES = ("plateau", "peak", "bytes_per_transition", "growth")
"""The compared figures, in the order the report prints them."""


@dataclass(frozen=True)
class Difference:
    """One figure of one role in both runs, and ``B − A``."""

    quantity: str
    """``plateau`` (bytes), ``peak`` (bytes), ``bytes_per_transition`` (bytes per stored
    transition) or ``growth`` (bytes per env step)."""

    a: Estimate | None
    """Run A's figure (None when A has none: no plateau, no buffer, no verdict)."""

    b: Estimate | None
    """Run B's figure."""

    difference: Estimate | None
    """``B − A`` with its interval; None when either side is missing. For ``peak`` (one
    measurement each, no interval) the interval is the value itself."""

    has_interval: bool
    """False for ``peak``: its difference has no interval."""

    @property
    def differs(self) -> bool:
        """True when the difference's interval excludes 0 (never for a figure without an
        interval)."""
        d = self.difference
        return self.has_interval and d is not None and not d.contains(0.0)


@dataclass(frozen=True)
class RoleComparison:
    """A role (or ``total``) of a matched pair of trials."""

    trial_a: str
    trial_b: str
    role: str
    differences: tuple[Difference, ...]
    """One per :data:`QUANTITIES`, in that order."""

    verdict_a: str
    """Run A's growth verdict for this role (``no growth``, ``sustained growth``, …)."""

    verdict_b: str

    def get(self, quantity: str) -> Difference:
        return next(d for d in self.differences if d.quantity == quantity)


@dataclass(frozen=True)
class UnmatchedTrial:
    """A trial of one run with no partner in the other."""

    run: str
    """``A`` or ``B``."""

    trial_id: str
    factors: tuple[tuple[str, Any], ...]
    """The factor values it was matched on."""

    other_has_fewer: bool = False
    """The other run has trials with these values, fewer of them, all paired already."""


@dataclass(frozen=True)
class Comparison:
    """The comparison of run A with run B."""

    name_a: str
    uri_a: str
    name_b: str
    uri_b: str
    confidence: float
    """Two-sided level of every interval (both analyses')."""

    factors: tuple[str, ...]
    """The factor names trials were matched on (those both runs have)."""

    matched: tuple[RoleComparison, ...]
    """Per matched pair, per role both trials have (``total`` last)."""

    pairs: tuple[tuple[str, str, tuple[tuple[str, Any], ...]], ...]
    """(trial of A, trial of B, factor values) per matched pair."""

    unmatched: tuple[UnmatchedTrial, ...]
    notes: tuple[str, ...]
    """Factors only one run has, roles only one trial has, repeats paired in order."""


def difference(a: Estimate, b: Estimate) -> Estimate:
    """``b − a`` of two independent estimates, half-widths added in quadrature."""
    value = b.value - a.value
    below = math.hypot(b.value - b.low, a.high - a.value)
    above = math.hypot(b.high - b.value, a.value - a.low)
    return Estimate(value, value - below, value + above)


def _plateau(role: RolePhases) -> Estimate | None:
    return role.plateau_or_extrapolated


def _peak(role: RolePhases) -> Estimate | None:
    return None if role.peak_bytes is None else Estimate(role.peak_bytes, *[role.peak_bytes] * 2)


BUFFER_HOLDERS = ("trainable", "total")
"""Roles whose memory against the buffer's fill is a cost per transition: RLlib keeps a
replay buffer in the Algorithm, the trainable's process (both API stacks). Any other
role's slope against the fill is its warm-up over the same minutes, not a buffer cost, so
compare gives it no per-transition figure."""


def _figures(
    analysis: Analysis, trial: TrialPhases, role: RolePhases
) -> tuple[dict[str, Estimate | None], str]:
    verdict = next(
        (v for v in analysis.verdicts if v.trial_id == trial.trial_id and v.role == role.role),
        None,
    )
    growth = verdict.fit.late_rate_bytes_per_step if verdict and verdict.fit else None
    figures = {
        "plateau": _plateau(role),
        "peak": _peak(role),
        "bytes_per_transition": (
            role.fill_bytes_per_transition if role.role in BUFFER_HOLDERS else None
        ),
        "growth": growth,
    }
    return figures, verdict.verdict if verdict else "no verdict"


def _key_values(trial: TrialPhases, names: Sequence[str]) -> tuple[tuple[str, Any], ...]:
    return tuple((name, _normal(trial.factors.get(name))) for name in names)


def _normal(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _factor_names(analysis: Analysis) -> set[str]:
    return {
        name
        for trial in analysis.trials
        for name, value in trial.factors.items()
        if name not in NOT_FACTORS and value is not None
    }


SAME_FOLDER_NOTE = (
    "A and B are the same results folder: every difference is 0 by construction; give two "
    "runs (e.g. before and after an upgrade) to compare them"
)


def same_folder(uri_a: str, uri_b: str) -> bool:
    """Whether two results locations name one folder: the same local directory (however
    the paths are spelled, symlinks followed), or the same URI."""
    if "://" in uri_a or "://" in uri_b:
        return uri_a.rstrip("/") == uri_b.rstrip("/")
    return os.path.realpath(uri_a) == os.path.realpath(uri_b)


def compare_analyses(a: Analysis, b: Analysis) -> Comparison:
    """Compare two analysed runs (see the module docstring for the matching and the
    intervals). Raises :class:`MemsweepError` when the two were analysed at different
    confidence levels."""
    if not math.isclose(a.options.confidence, b.options.confidence):
        raise MemsweepError(
            f"the two analyses use different confidence levels ({a.options.confidence} and "
            f"{b.options.confidence}): analyse both at the same --confidence"
        )
    names_a, names_b = _factor_names(a), _factor_names(b)
    common = tuple(sorted(names_a & names_b))
    notes = []
    runs: tuple[tuple[str, Analysis], ...] = (("A", a), ("B", b))
    if same_folder(a.uri, b.uri):
        notes.append(SAME_FOLDER_NOTE)
        runs = (("A (= B)", a),)
    notes += [f"run {run}: {text}" for run, x in runs for text in x.data.skipped]
    notes += [
        f"factor {name!r} is only in run {run}: not matched on"
        for run, names in (("A", names_a - names_b), ("B", names_b - names_a))
        for name in sorted(names)
    ]
    waiting: dict[tuple[tuple[str, Any], ...], list[TrialPhases]] = {}
    for trial in b.trials:
        waiting.setdefault(_key_values(trial, common), []).append(trial)
    keys_b = set(waiting)
    keys_a = {_key_values(trial, common) for trial in a.trials}
    repeats = [key for key, trials in waiting.items() if len(trials) > 1]
    if repeats:
        notes.append(
            f"{len(repeats)} factor setting(s) occur more than once in run B: repeats are "
            "paired in the order of trials.parquet"
        )
    matched: list[RoleComparison] = []
    pairs: list[tuple[str, str, tuple[tuple[str, Any], ...]]] = []
    unmatched: list[UnmatchedTrial] = []
    for trial_a in a.trials:
        key = _key_values(trial_a, common)
        candidates = waiting.get(key)
        if not candidates:
            unmatched.append(UnmatchedTrial("A", trial_a.trial_id, key, key in keys_b))
            continue
        trial_b = candidates.pop(0)
        pairs.append((trial_a.trial_id, trial_b.trial_id, key))
        roles_b = {r.role for r in trial_b.roles}
        for role_a in trial_a.roles:
            role_b = trial_b.role(role_a.role)
            if role_b is None:
                notes.append(f"{trial_a.trial_id}: role {role_a.role} is only in run A")
                continue
            matched.append(_role_comparison(a, b, trial_a, trial_b, role_a, role_b))
        for role in sorted(roles_b - {r.role for r in trial_a.roles}):
            notes.append(f"{trial_b.trial_id}: role {role} is only in run B")
    for key, trials in waiting.items():
        unmatched += [UnmatchedTrial("B", t.trial_id, key, key in keys_a) for t in trials]
    if not pairs:
        notes.append(
            "no trial of A has the values of a trial of B"
            + (f" on {', '.join(common)}" if common else "")
            + ": nothing to compare; compare two runs of one sweep file (e.g. before and "
            "after an upgrade)"
        )
    return Comparison(
        name_a=a.name,
        uri_a=a.uri,
        name_b=b.name,
        uri_b=b.uri,
        confidence=a.options.confidence,
        factors=common,
        matched=tuple(matched),
        pairs=tuple(pairs),
        unmatched=tuple(unmatched),
        notes=tuple(dict.fromkeys(notes)),
    )


def _role_comparison(
    a: Analysis,
    b: Analysis,
    trial_a: TrialPhases,
    trial_b: TrialPhases,
    role_a: RolePhases,
    role_b: RolePhases,
) -> RoleComparison:
    figures_a, verdict_a = _figures(a, trial_a, role_a)
    figures_b, verdict_b = _figures(b, trial_b, role_b)
    differences = []
    for quantity in QUANTITIES:
        fa, fb = figures_a[quantity], figures_b[quantity]
        diff = difference(fa, fb) if fa is not None and fb is not None else None
        differences.append(Difference(quantity, fa, fb, diff, has_interval=quantity != "peak"))
    return RoleComparison(
        trial_a=trial_a.trial_id,
        trial_b=trial_b.trial_id,
        role=role_a.role,
        differences=tuple(differences),
        verdict_a=verdict_a,
        verdict_b=verdict_b,
    )


def factor_text(values: Sequence[tuple[str, object]] | Mapping[str, object]) -> str:
    """``num_workers=2, replay_capacity=10000`` (the matched factor values)."""
    items = values.items() if isinstance(values, Mapping) else values
    return ", ".join(f"{name}={value}" for name, value in items) or "(no factors)"

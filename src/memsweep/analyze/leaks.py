"""Growth verdicts of a sweep: every trial and role (and the trial's total) classified.

One of :data:`~memsweep.analyze.growth.GrowthKind` per trial and role: ``no growth``,
``buffer fill`` (the buffer is not full yet), ``one-time step``, ``settling``,
``sustained growth`` or ``too little plateau``. The series and the rule are
:mod:`memsweep.analyze.growth`'s; this module cuts each trial's plateau out of the
sweep's frames, classifies it, and words the verdict in the user's units: MB per 1M env
steps, projected to a horizon in env steps, besides MB/h.

Only ``sustained growth`` is a flag. A rate is printed signed only when it is a
growth; a bound below zero reads "memory fell", never a negative leak.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from memsweep.analyze.growth import GrowthFit, GrowthKind, GrowthRule, classify_growth
from memsweep.analyze.load import SweepData
from memsweep.analyze.phases import TrialPhases
from memsweep.units import MB, Estimate, format_bytes, format_number

DEFAULT_HORIZON_ENV_STEPS = 10_000_000.0
"""Env steps a sustained growth is projected to unless the user gives ``--horizon``:
10M, the length of a typical Atari or MuJoCo RLlib run."""

GROWTH_METRIC = "rss_bytes"
"""The memory figure growth is judged on (see :mod:`memsweep.analyze.growth`)."""

PER_STEPS = 1_000_000.0
"""Rates are printed per this many env steps (MB per 1M env steps)."""


@dataclass(frozen=True)
class GrowthVerdict:
    """The growth verdict of one role of one trial."""

    trial_id: str
    role: str
    """Process role or ``total``."""

    verdict: GrowthKind
    fit: GrowthFit | None
    """The classifier's figures; None when the buffer never filled."""

    rate_mb_per_1m_steps: Estimate | None
    """Late rate over the plateau, MB per 1M env steps."""

    rate_mb_per_h: Estimate | None
    """Late rate over the plateau against time, MB/h."""

    projected_bytes: Estimate | None
    """For sustained growth: late rate × ``horizon_env_steps``, bytes."""

    horizon_env_steps: float
    """The horizon of the projection, env steps."""

    text: str
    """The sentence the report prints."""

    @property
    def flagged(self) -> bool:
        """True for sustained growth, the one verdict a user should act on."""
        return self.verdict == "sustained growth"

    @property
    def rate_mb_per_1k_steps(self) -> Estimate | None:
        """Late rate, MB per 1k env steps."""
        rate = self.rate_mb_per_1m_steps
        return rate.scaled(1 / 1000) if rate is not None else None


LeakVerdict = GrowthVerdict
"""The name earlier versions used."""


@dataclass(frozen=True)
class PlateauSeries:
    """One role's plateau: per time bucket, env steps since the plateau began, RSS, time."""

    env_steps: np.ndarray
    mem_bytes: np.ndarray
    t_s: np.ndarray


def plateau_series(
    trial: TrialPhases, rows: pd.DataFrame, progress: pd.DataFrame
) -> PlateauSeries | None:
    """The RSS series of ``rows`` (one trial and role) from the plateau's start, or None."""
    start = trial.plateau_start_s
    if start is None or rows.empty:
        return None
    after = rows[rows["t_s"] >= start].sort_values("t_s")
    steps0 = float("nan")
    if len(progress):
        p = progress.sort_values("t_s")
        steps0 = float(np.interp(start, p["t_s"].to_numpy(float), p["env_steps"].to_numpy(float)))
    steps = after["env_steps"].to_numpy(dtype=np.float64)
    if not np.isfinite(steps0):
        finite = steps[np.isfinite(steps)]
        steps0 = float(finite[0]) if len(finite) else 0.0
    return PlateauSeries(
        env_steps=steps - steps0,
        mem_bytes=after[GROWTH_METRIC].to_numpy(dtype=np.float64),
        t_s=after["t_s"].to_numpy(dtype=np.float64),
    )


def growth_verdicts(
    trials: Sequence[TrialPhases],
    data: SweepData,
    rule: GrowthRule | None = None,
    horizon_env_steps: float = DEFAULT_HORIZON_ENV_STEPS,
) -> tuple[GrowthVerdict, ...]:
    """A verdict for every role of every trial (see the module docstring)."""
    rule = rule or GrowthRule()
    series = dict(tuple(data.series.groupby(["trial_id", "role"], sort=False)))
    progress = dict(tuple(data.progress.groupby("trial_id", sort=False)))
    empty = data.progress.iloc[:0]
    out = []
    for trial in trials:
        trial_progress = progress.get(trial.trial_id, empty)
        for role in trial.roles:
            rows = series.get((trial.trial_id, role.role))
            cut = plateau_series(trial, rows, trial_progress) if rows is not None else None
            out.append(verdict_of(trial, role.role, cut, rule, horizon_env_steps))
    return tuple(out)


def verdict_of(
    trial: TrialPhases,
    role: str,
    series: PlateauSeries | None,
    rule: GrowthRule,
    horizon_env_steps: float,
) -> GrowthVerdict:
    """Classify one role's plateau and word the verdict."""
    if series is None:
        return _not_full(trial, role, rule, horizon_env_steps)
    fit = classify_growth(series.env_steps, series.mem_bytes, series.t_s, rule)
    per_m = (
        fit.late_rate_bytes_per_step.scaled(PER_STEPS / MB)
        if fit.late_rate_bytes_per_step
        else None
    )
    per_h = fit.late_rate_bytes_per_h.scaled(1 / MB) if fit.late_rate_bytes_per_h else None
    projected = None
    if fit.kind == "sustained growth" and fit.late_rate_bytes_per_step is not None:
        projected = fit.late_rate_bytes_per_step.scaled(horizon_env_steps)
    return GrowthVerdict(
        trial_id=trial.trial_id,
        role=role,
        verdict=fit.kind,
        fit=fit,
        rate_mb_per_1m_steps=per_m,
        rate_mb_per_h=per_h,
        projected_bytes=projected,
        horizon_env_steps=horizon_env_steps,
        text=growth_text(fit, rule, per_h, projected, horizon_env_steps),
    )


def _not_full(
    trial: TrialPhases, role: str, rule: GrowthRule, horizon_env_steps: float
) -> GrowthVerdict:
    steps = trial.env_steps
    if trial.capacity > 0 and trial.fill_fraction is not None and steps is not None:
        left = max(trial.capacity * (1 - trial.fill_fraction), 0.0)
        text = (
            f"buffer fill: {trial.fill_fraction:.0%} full after {_steps(steps)} env "
            f"steps; about {_steps(left)} more env steps fill it, then "
            f"{_steps(rule.min_plateau_steps)} or more of plateau tell growth from none"
        )
        kind: GrowthKind = "buffer fill"
    else:
        text = (
            "too little plateau: no Tune result marks where the plateau begins; "
            f"{_steps(rule.min_plateau_steps)} env steps of plateau or more are needed"
        )
        kind = "too little plateau"
    return GrowthVerdict(
        trial_id=trial.trial_id,
        role=role,
        verdict=kind,
        fit=None,
        rate_mb_per_1m_steps=None,
        rate_mb_per_h=None,
        projected_bytes=None,
        horizon_env_steps=horizon_env_steps,
        text=text,
    )


def _steps(value: float) -> str:
    return f"{value:,.0f}"


def _mb(value: float) -> str:
    return f"{format_number(value / MB)} MB"


def _per_m(value: float) -> str:
    return f"{format_number(value * PER_STEPS / MB)} MB per 1M env steps"


def _bound(fit: GrowthFit) -> str:
    """The late rate's upper bound, in words that never call a fall a growth."""
    rate = fit.late_rate_statistical_bytes_per_step
    if rate is None:
        return ""
    if rate.high <= 0:
        return "memory did not rise late in the plateau"
    return f"late rate below +{_per_m(rate.high)}"


PROJECTION_SAID_BEYOND = 10.0
"""A projection this many times longer than the plateau it was measured on says so."""


def _beyond(fit: GrowthFit, horizon_env_steps: float) -> str:
    """How far past what was measured a projection runs, when that is far."""
    measured = fit.plateau_env_steps
    if measured <= 0 or horizon_env_steps < PROJECTION_SAID_BEYOND * measured:
        return ""
    return (
        f" (a straight line {horizon_env_steps / measured:,.0f}× the {_steps(measured)} env "
        "steps measured: a rate that holds, not a measured total)"
    )


def growth_text(
    fit: GrowthFit,
    rule: GrowthRule,
    per_h: Estimate | None,
    projected: Estimate | None,
    horizon_env_steps: float,
) -> str:
    """The report's sentence for one classified plateau."""
    over = f"{_steps(fit.plateau_env_steps)} env steps of plateau"
    rate = fit.late_rate_bytes_per_step
    if fit.kind == "sustained growth" and rate is not None and projected is not None:
        hourly = f", {format_number(per_h.value)} MB/h" if per_h and per_h.value > 0 else ""
        return (
            f"sustained growth: +{_per_m(rate.value)} (CI {format_number(rate.low * PER_STEPS / MB)}"
            f"–{format_number(rate.high * PER_STEPS / MB)}){hourly} over the last half of "
            f"{over}; +{format_bytes(projected.value)} "
            f"({format_bytes(max(projected.low, 0.0))}–{format_bytes(projected.high)}) "
            f"over {_steps(horizon_env_steps)} env steps{_beyond(fit, horizon_env_steps)}"
        )
    if fit.kind == "one-time step" and fit.step_bytes is not None:
        word = "step" if fit.step_bytes > 0 else "drop"
        sign = "+" if fit.step_bytes > 0 else "−"
        at = _steps(fit.step_at_env_steps or 0.0)
        return (
            f"one-time {word} of {sign}{_mb(abs(fit.step_bytes))} at env step {at} of the "
            f"plateau, then bounded ({_bound(fit)}; {over})"
        )
    if fit.kind == "settling" and fit.early_rate_bytes_per_step is not None:
        early = fit.early_rate_bytes_per_step.value
        return (
            f"settling: {'+' if fit.rise_bytes >= 0 else '−'}{_mb(abs(fit.rise_bytes))} over "
            f"{over}, the rate fell from +{_per_m(early)} early to bounded ({_bound(fit)})"
        )
    if fit.kind == "no growth":
        return f"no growth over {over} ({_bound(fit)})"
    more = _steps(fit.more_env_steps or 0.0)
    return (
        f"too little plateau: {over}; about {more} more env steps would tell growth above "
        f"{_per_m(rule.min_rate_bytes_per_step)} from none"
    )

"""A trial's memory, cut into phases: set-up, buffer fill, plateau; with drift and peak.

The buffer's fill is known from the Tune results, not guessed from the memory curve:
it holds ``replay_size`` transitions when RLlib reports it, else ``min(env steps,
capacity)``. So the fill phase is fitted against stored transitions (the slope is bytes
per transition), and the plateau starts when the buffer is full. An algorithm without a
buffer (capacity 0) is all plateau after set-up.

Every fit is done per role and for the trial's ``total`` (sum over roles without
double-counting shared pages: PSS when sampled).

**Peak** is the one definition memsweep uses everywhere (:mod:`memsweep.store.peaks`):
max over time of Σ PSS over the processes (of the role, or of the trial), read per
second from the samples. A spike shorter than the PSS reads' period (1 s by default)
can fall between two reads and be missed; Σ VmHWM (each process's kernel high-water
mark, summed) still shows it, but counts a shared page once per process that maps it
and adds peaks of different moments, so it is kept beside the peak as an upper bound
(``hwm_sum_bytes``), never used as the peak.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from memsweep.analyze.buffer_cost import buffer_cost
from memsweep.analyze.load import SweepData, cell_text, trial_capacity
from memsweep.analyze.segments import PhaseOptions, Segments, segment
from memsweep.analyze.trends import TrendFit, fit_trend, mean_estimate
from memsweep.units import Estimate

SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class RolePhases:
    """Phase figures of one role of one trial (or of its ``total``). Bytes unless stated."""

    role: str
    """Process role (``trainable``, ``env_runner``, …) or ``total``."""

    baseline: Estimate | None
    """Memory with an empty buffer: the fill fit's intercept."""

    fill_bytes_per_transition: Estimate | None
    """Slope of memory against stored transitions during the fill."""

    plateau: Estimate | None
    """Measured memory when the buffer has just filled (drift fit's intercept), None if
    the plateau was not reached."""

    plateau_extrapolated: Estimate | None
    """For a trial that never filled its buffer: the fill fit evaluated at capacity."""

    drift_bytes_per_h: Estimate | None
    """Memory growth per hour after the plateau."""

    drift_bytes_per_1k_steps: Estimate | None
    """Memory growth per 1000 env steps after the plateau."""

    drift_p_value: float | None
    """p-value of zero drift after the plateau."""

    residual_drift_bytes_per_h: Estimate | None
    """Before the plateau: growth per hour beyond what the stored transitions explain
    (None when time and stored transitions cannot be told apart)."""

    residual_drift_p_value: float | None
    """p-value of zero residual drift before the plateau."""

    peak_bytes: float | None
    """The peak: max over time of Σ PSS over the role's processes (shared pages once;
    Σ RSS when the sweep has no PSS), :mod:`memsweep.store.peaks`, as measured (the
    plateau is capped at it); the largest bucket value only for a role without one
    complete PSS round."""

    peak_sampled_bytes: float | None
    """Largest bucket value of the memory series: per-process means added up per bucket,
    so it may exceed the peak (never used as the peak when one was measured)."""

    last_bytes: float | None
    """Memory in the last bucket."""

    buffer_bytes_per_transition: Estimate | None = None
    """The buffer's own cost per stored transition: the fill slope over the second half
    of the fill (after warm-up), minus the growth that goes on without the buffer (the
    plateau's growth per env step). None when the two cannot be told apart
    (``buffer_note`` says why)."""

    buffer_note: str = ""
    """Why the buffer's cost could not be separated from warm-up, or what was excluded."""

    hwm_sum_bytes: float | None = None
    """Σ over the role's processes of each one's VmHWM: an upper bound on the peak that
    still shows a spike between two PSS reads, but counts shared pages once per process
    and adds peaks of different moments (a separate figure, never the peak)."""

    @property
    def plateau_or_extrapolated(self) -> Estimate | None:
        return self.plateau or self.plateau_extrapolated


@dataclass(frozen=True)
class TrialPhases:
    """A trial's factors and phases."""

    trial_id: str
    factors: dict[str, Any]
    """``replay_capacity``, ``model``, ``model_params``, ``num_workers``, ``framework``,
    ``obs_bytes``, ``status`` (None where the trial has no such value: a foreign
    trainable), then every other factor of the trial by name (``factors_json``)."""

    capacity: float
    """Replay capacity RLlib built (transitions), 0 without a buffer."""

    setup_s: float | None
    """Seconds from the first sample to the first Tune result."""

    plateau_start_s: float | None
    """Seconds since the first sample when the buffer was full; None if never."""

    plateau_reached: bool
    """At least ``min_plateau_buckets`` buckets after the buffer filled."""

    fill_fraction: float | None
    """Stored transitions ÷ capacity at the last Tune result."""

    env_steps: float | None
    """Env steps at the last Tune result."""

    steps_per_s: float | None
    """Env-step rate over the trial (for the time to plateau)."""

    duration_s: float
    """Seconds from the first to the last sample."""

    roles: tuple[RolePhases, ...]
    """Per role, then ``total`` last."""

    notes: tuple[str, ...]
    """What the report should say about this trial."""

    @property
    def total(self) -> RolePhases:
        return self.roles[-1]

    def role(self, name: str) -> RolePhases | None:
        return next((r for r in self.roles if r.role == name), None)


def _role_phases(
    role: str,
    rows: pd.DataFrame,
    *,
    seg: Segments,
    capacity: float,
    measured_peak: float | None,
    hwm_sum: float | None,
    options: PhaseOptions,
) -> RolePhases:
    y = rows["mem_bytes"].to_numpy(dtype=np.float64)
    t = rows["t_s"].to_numpy(dtype=np.float64)
    stored = rows["stored"].to_numpy(dtype=np.float64)
    steps = rows["env_steps"].to_numpy(dtype=np.float64)
    has_y = np.isfinite(y)
    conf = options.confidence

    fill = seg.fill & has_y
    fill_fit: TrendFit | None = None
    if fill.sum() >= options.min_fill_buckets:
        fill_fit = fit_trend(y[fill], {"stored": stored[fill]}, conf)

    plateau = seg.plateau & has_y
    plateau_level = drift_h = drift_k = None
    drift_p: float | None = None
    reached = seg.plateau_start_s is not None and plateau.sum() >= options.min_plateau_buckets
    if reached and seg.plateau_start_s is not None:
        hours = (t[plateau] - seg.plateau_start_s) / SECONDS_PER_HOUR
        drift_fit = None
        if plateau.sum() >= options.min_drift_buckets:
            drift_fit = fit_trend(y[plateau], {"hours": hours}, conf)
        if drift_fit is not None:
            plateau_level = drift_fit.coef("const")
            drift_h = drift_fit.coef("hours")
            drift_p = drift_fit.p_value("hours")
            with_steps = plateau & np.isfinite(steps)
            if with_steps.sum() >= options.min_drift_buckets:
                steps_fit = fit_trend(y[with_steps], {"ksteps": steps[with_steps] / 1000}, conf)
                drift_k = steps_fit.coef("ksteps") if steps_fit else None
        else:
            plateau_level = mean_estimate(y[plateau], conf)

    extrapolated = residual = None
    residual_p: float | None = None
    if not reached and fill_fit is not None and capacity > 0:
        extrapolated = fill_fit.mean_at({"stored": capacity})
        joint = fit_trend(
            y[fill], {"stored": stored[fill], "hours": t[fill] / SECONDS_PER_HOUR}, conf
        )
        if joint is None and fill_fit.coef("stored").low <= 0:
            # Steps and time are collinear (a steady env-step rate) and this role does not
            # grow with the buffer: its growth over time is then all unexplained.
            joint = fit_trend(y[fill], {"hours": t[fill] / SECONDS_PER_HOUR}, conf)
        if joint is not None:
            residual = joint.coef("hours")
            residual_p = joint.p_value("hours")

    buffer, buffer_note = buffer_cost(
        y[fill], stored[fill], drift_k if reached else None, capacity, conf, filled=reached
    )
    peak_sampled = float(np.nanmax(y)) if has_y.any() else None
    # The peak is store.peaks' figure as measured, never raised to a bucket value: a
    # bucket adds per-process means over different rounds (and rounds the peak rule
    # drops, where a process had no PSS yet), which no one moment reached. Only a role
    # without one complete round falls back to the bucket maximum.
    peak = measured_peak if measured_peak is not None else peak_sampled
    last = float(y[has_y][-1]) if has_y.any() else None
    baseline = fill_fit.coef("const") if fill_fit else None
    level = plateau_level if reached else None
    baseline, level, peak = coherent_levels(baseline, level, peak)
    return RolePhases(
        role=role,
        baseline=baseline,
        fill_bytes_per_transition=fill_fit.coef("stored") if fill_fit else None,
        plateau=level,
        plateau_extrapolated=extrapolated,
        drift_bytes_per_h=drift_h,
        drift_bytes_per_1k_steps=drift_k,
        drift_p_value=drift_p,
        residual_drift_bytes_per_h=residual,
        residual_drift_p_value=residual_p,
        peak_bytes=peak,
        peak_sampled_bytes=peak_sampled,
        last_bytes=last,
        buffer_bytes_per_transition=buffer,
        buffer_note=buffer_note,
        hwm_sum_bytes=hwm_sum,
    )


def coherent_levels(
    baseline: Estimate | None, plateau: Estimate | None, peak: float | None
) -> tuple[Estimate | None, Estimate | None, float | None]:
    """Baseline ≤ plateau ≤ peak, never negative, each value inside its own interval.

    Memory is never negative: every figure is cut at 0. The peak is a measurement
    (:mod:`memsweep.store.peaks`) and stays as measured, so that it is the figure every
    other table prints: a plateau fit whose level lands above it (a level between
    buckets, or a drift fit's intercept) is capped at the peak, and its low end with it.
    A baseline is memory with an empty buffer, so it is at most the plateau: a fill fit
    whose intercept lands above the plateau (a role that shrank while the buffer filled)
    is capped at the plateau, its interval's ends too. Capping an end no lower than the
    value keeps the value inside its interval."""

    def floor0(e: Estimate | None) -> Estimate | None:
        if e is None:
            return None
        return Estimate(max(e.value, 0.0), max(e.low, 0.0), max(e.high, 0.0))

    baseline, plateau = floor0(baseline), floor0(plateau)
    if peak is not None:
        peak = max(peak, 0.0)
        if plateau is not None and plateau.value > peak:
            plateau = Estimate(peak, min(plateau.low, peak), plateau.high)
    if baseline is not None and plateau is not None:
        baseline = Estimate(
            min(baseline.value, plateau.value),
            min(baseline.low, plateau.low),
            min(baseline.high, plateau.high),
        )
    return baseline, plateau, peak


def trial_phases(
    trial_id: str,
    trial: pd.Series,
    *,
    rows: pd.DataFrame,
    progress: pd.DataFrame,
    peaks_frame: pd.DataFrame,
    options: PhaseOptions,
    factor_values: Mapping[str, Any] | None = None,
    metric: str = "pss_bytes",
) -> TrialPhases | None:
    """Phases of one trial from its rows of the sweep's frames; None without samples.
    ``factor_values`` are the trial's factors (:func:`~memsweep.analyze.load.trial_factors`);
    ``metric`` is the sweep's memory figure (:attr:`SweepData.metric`): the peak is max
    Σ PSS, or max Σ RSS for a sweep sampled without PSS."""
    if rows.empty:
        return None
    capacity = trial_capacity(trial)
    progress = progress.sort_values("t_s")
    p_t = progress["t_s"].to_numpy(dtype=np.float64)
    p_stored = progress["stored"].to_numpy(dtype=np.float64)
    if capacity > 0:
        # The buffer counts as full once as many env steps as its capacity were sampled
        # (the rule the plateau stop uses, memsweep.run.trainable): RLlib's new-stack
        # episode buffer evicts whole episodes and settles below its capacity (90% of a
        # 2,000 buffer with 200-step episodes), so its size alone may never reach 98%.
        steps_now = progress["env_steps"].to_numpy(dtype=np.float64)
        reached_capacity = np.isfinite(steps_now) & (steps_now >= capacity)
        p_stored = np.where(
            reached_capacity, np.maximum(np.nan_to_num(p_stored), capacity), p_stored
        )
    p_steps = progress["env_steps"].to_numpy(dtype=np.float64)
    total_rows = rows[rows["role"] == "total"]
    bucket_s = float(total_rows["bucket_s"].iloc[0])
    cut = {
        "bucket_s": bucket_s,
        "capacity": capacity,
        "progress_t_s": p_t,
        "progress_stored": p_stored,
        "options": options,
    }
    seg_total = segment(total_rows["t_s"].to_numpy(), total_rows["stored"].to_numpy(), **cut)
    peaks = peaks_frame.set_index("role")
    peak_column = "peak_bytes" if metric == "pss_bytes" else "peak_rss_bytes"
    by_role = dict(tuple(rows.groupby("role", sort=False)))
    role_names = [r for r in _ordered_roles(by_role) if r != "total"] + ["total"]
    roles = []
    for role in role_names:
        role_rows = by_role[role]
        seg = segment(role_rows["t_s"].to_numpy(), role_rows["stored"].to_numpy(), **cut)
        roles.append(
            _role_phases(
                role,
                role_rows,
                seg=seg,
                capacity=capacity,
                measured_peak=_get(peaks, role, peak_column),
                hwm_sum=_get(peaks, role, "hwm_bytes"),
                options=options,
            )
        )

    reached = roles[-1].plateau is not None
    notes = []
    fill_fraction = None
    if capacity > 0 and len(p_stored):
        fill_fraction = float(p_stored[-1] / capacity)
    status = cell_text(trial.get("status"), "unknown")
    steps_rate = None
    if len(p_t) >= 2 and p_t[-1] > p_t[0]:
        steps_rate = float((p_steps[-1] - p_steps[0]) / (p_t[-1] - p_t[0]))
    if len(p_t) and not np.isfinite(p_steps).any():
        notes.append(
            "its Tune results carry no env steps (memsweep/env_steps, or RLlib's "
            "env_runners/num_env_steps_sampled_lifetime): phases by time only"
        )
    if len(p_t) and not capacity > 0:
        notes.append("no replay capacity known and no replay size in its results: no fill phase")
    if len(p_t) == 0:
        notes.append("no Tune results: phases unknown")
    elif not reached and capacity > 0:
        filled = f"{fill_fraction:.0%}" if fill_fraction is not None else "?"
        how = (
            "the plateau is extrapolated from the fill"
            if roles[-1].plateau_extrapolated is not None
            else "too few fill samples to extrapolate the plateau"
        )
        eta = ""
        if steps_rate and fill_fraction is not None and fill_fraction < 1:
            minutes = capacity * (1 - fill_fraction) / steps_rate / 60
            eta = f"; at {steps_rate:,.0f} env steps/s it would fill in {minutes:,.0f} min"
        notes.append(
            f"never reached its plateau (buffer {filled} full after {p_steps[-1]:,.0f} env "
            f"steps): {how}{eta}"
        )
    elif not reached:
        buckets = int(seg_total.plateau.sum())
        notes.append(
            f"too few samples after set-up to measure a plateau: {buckets} time bucket(s) of "
            f"{bucket_s:g} s, {options.min_plateau_buckets} needed; run it longer (a larger "
            "stop.plateau_env_steps or stop.seconds)"
        )
    if status != "terminated":
        notes.append(f"status {status}")
    duration = float(total_rows["t_s"].max() + bucket_s / 2)
    return TrialPhases(
        trial_id=trial_id,
        factors={
            "replay_capacity": _num(trial.get("replay_capacity")),
            "model": trial.get("model"),
            "model_params": _num(trial.get("model_params")),
            "num_workers": _num(trial.get("num_workers")),
            "framework": trial.get("framework"),
            "obs_bytes": _num(trial.get("obs_bytes")),
            "status": status,
            **{k: v for k, v in (factor_values or {}).items() if k not in _DERIVED},
        },
        capacity=capacity,
        setup_s=float(p_t[0]) if len(p_t) else None,
        plateau_start_s=seg_total.plateau_start_s,
        plateau_reached=reached,
        fill_fraction=fill_fraction,
        env_steps=float(p_steps[-1]) if len(p_steps) else None,
        steps_per_s=steps_rate,
        duration_s=duration,
        roles=tuple(roles),
        notes=tuple(notes),
    )


_DERIVED = ("model_params", "obs_bytes", "status")
"""Keys of ``TrialPhases.factors`` the analysis derives itself (never taken from
``factors_json``, where a factor of that name would be a config key)."""


def _ordered_roles(roles: Any) -> list[str]:
    known = [
        r
        for r in ("trainable", "learner", "replay", "aggregator", "env_runner", "child")
        if r in set(roles)
    ]
    return known + sorted(set(roles) - set(known))


def _get(frame: pd.DataFrame, role: str, column: str) -> float | None:
    if role not in frame.index or column not in frame.columns:
        return None
    value = frame.at[role, column]
    return None if value is None or pd.isna(value) else float(value)


def _num(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def all_phases(data: SweepData, options: PhaseOptions) -> tuple[TrialPhases, ...]:
    """Phases of every trial that has samples, in the order of ``trials.parquet``."""
    series = dict(tuple(data.series.groupby("trial_id", sort=False)))
    progress = dict(tuple(data.progress.groupby("trial_id", sort=False)))
    peaks = dict(tuple(data.peaks.groupby("trial_id", sort=False)))
    empty_progress = data.progress.iloc[:0]
    empty_peaks = data.peaks.iloc[:0]
    out = []
    for trial_id, trial in data.trials.iterrows():
        if trial_id not in series:
            continue
        phases = trial_phases(
            str(trial_id),
            trial,
            rows=series[trial_id],
            progress=progress.get(trial_id, empty_progress),
            peaks_frame=peaks.get(trial_id, empty_peaks),
            options=options,
            metric=data.metric,
            factor_values=data.factors.get(str(trial_id)),
        )
        if phases is not None:
            out.append(phases)
    return tuple(out)

"""Growth verdicts a user can act on: one memory series after the buffer filled, classified.

**Input.** A role's resident memory (RSS, bytes) over the plateau — from the moment its
buffer is full (or, without a buffer, from the first Tune result) — against env steps
since then. RSS, not PSS: PSS splits shared pages by the number of processes mapping
them, and on a shared machine that number changes whenever any other process starts or
stops, which moves a trainable's PSS by tens of MB with no allocation of its own
(measured on the corpus: bucket-to-bucket SD 17 MB for PSS against 1 MB for RSS). A leak
is private memory and shows in RSS.

**Model.** Over the plateau, ``rss = a + b·steps (+ h·[steps > s₀])``: a straight line
with at most one level shift. The shift ``s₀`` is the best single change point of a
piecewise-linear model (``ruptures``' binary segmentation, ``CostLinear``), kept only
when the line-plus-shift beats the line by BIC, the shift is at least ``min_step_bytes``
and at least half of it happens within two buckets of the break (a knee of a settling
curve is not a step), and it goes up: a drop is memory given back, whose regrowth a
shift regressor would read as a slope (a leak-free torch trial on a loaded machine
dropped 8 MB and crept back, and read as "sustained growth" at 1.1 MB per 1k env steps). The rate ``b`` that decides is the **late rate**: the slope over the
second half of the plateau (in env steps), with the shift as a regressor when it falls
there, fitted by OLS with Newey–West intervals (:func:`memsweep.analyze.trends.fit_trend`).
The early rate is the same over the first half.

**Rule** (``r`` = ``min_rate_bytes_per_step``). The late rate has two intervals: the
statistical one (Newey–West at ``confidence``), and the reported one, widened in
quadrature by the background creep a leak-free RLlib run shows by itself after its
buffer fills (``background_rate_bytes_per_step``, falling like 1/length beyond
``background_env_steps``): within one run a leak cannot be told from that creep.

1. fewer than ``min_plateau_buckets`` buckets or ``min_plateau_steps`` env steps of
   plateau: **too little plateau**;
2. the rate falls — the early rate is above ``r``, the late rate's interval lies below
   the early one's and the late rate is under ``falling_ratio`` × the early rate:
   **settling**;
3. the reported interval lies above ``r`` and memory rose by ``min_rise_bytes`` and by
   more than its scatter allows (:func:`_rise_noise`):
   **sustained growth** (a rate that does not fall) — on a plateau shorter than
   ``min_sustained_env_steps`` only when the statistical interval also lies above
   ``creep_ceiling_bytes_per_step`` (leak-free runs creep that fast by themselves that
   early), else **too little plateau** with the env steps up to that length;
4. the statistical interval lies below ``r`` (growth, if any, is bounded): a kept level
   shift → **one-time step**; else an early rate whose interval lies above ``r`` →
   **settling**; else **no growth**;
5. otherwise **too little plateau**, with the env steps of plateau after which the
   interval would decide if the rate stayed where it is (the statistical half-width
   narrows like 1/length).

The thresholds' defaults come from the corpus of leak-free runs with planted leaks,
steps and settling curves (``benchmarks/bench_growth.py``, ``docs/growth.md``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

import numpy as np
import numpy.typing as npt
import ruptures

from memsweep.analyze.trends import fit_trend
from memsweep.units import Estimate

GrowthKind = Literal[
    "no growth",
    "buffer fill",
    "one-time step",
    "settling",
    "sustained growth",
    "too little plateau",
]
"""The verdicts, in the words the report prints."""

SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class GrowthRule:
    """Thresholds of the growth verdict (defaults measured on the corpus, docs/growth.md)."""

    min_rate_bytes_per_step: float = 75.0
    """A late rate whose interval lies above this is sustained growth; below it, growth
    is bounded. Bytes per env step = MB per 1M env steps (default 75: 0.075 MB per 1k)."""

    background_rate_bytes_per_step: float = 150.0
    """Half-width added (in quadrature) to the late rate's interval: how fast a leak-free
    RLlib run's memory still moves by itself after its buffer fills, bytes per env step
    (default 150 = 0.15 MB per 1k env steps: the torch new-stack trainable creeps at
    0.1–0.3 MB per 1k env steps for the first 20k–50k env steps of its plateau). Within
    one run a leak cannot be told from that creep, so the leak's interval must hold it."""

    background_env_steps: float = 50_000.0
    """The background creep is full up to this many env steps of plateau and falls like
    1/length beyond (measured: 0.04–0.07 MB per 1k env steps late in 115k-step plateaus)."""

    falling_ratio: float = 0.5
    """A late rate below this fraction of the early rate, the two intervals apart, is a
    rate that falls: settling, however high it still is."""

    min_step_bytes: float = 5e6
    """Smallest level shift reported as a one-time step, bytes."""

    min_rise_bytes: float = 1e6
    """Sustained growth must also have raised memory over the plateau by at least this
    much (the last tenth's mean over the first tenth's, bytes), and by more than the
    scatter of the series reaches by chance at ``confidence``: on a short, noisy plateau
    a slope interval can exclude 0 by chance while the memory did not rise at all."""

    min_sustained_env_steps: float = 30_000.0
    """A plateau shorter than this (env steps) is called sustained growth only when the
    late rate's statistical interval lies above ``creep_ceiling_bytes_per_step``; a
    slower rate on a shorter plateau is "too little plateau", with the env steps up to
    this length. Leak-free torch new-stack trials still creep at 0.2–0.45 MB per 1k env
    steps 20k–35k env steps into their plateau (allocator retention that settles), which
    no test on that short a series tells from a leak (docs/growth.md)."""

    creep_ceiling_bytes_per_step: float = 1000.0
    """The fastest rate a leak-free plateau shorter than ``min_sustained_env_steps`` shows
    by itself, bytes per env step (default 1,000 = 1 MB per 1k env steps: the corpus's
    leak-free early rates reach 0.45 MB per 1k on an idle machine, and a torch trial of
    the default sweep on a loaded one crept at 1.03 MB per 1k, interval 0.88–1.18, over a
    15k-step plateau). A short plateau's rate whose interval lies above it is sustained
    growth at once (TF eager grows 28–82 MB per 1k)."""

    min_plateau_steps: float = 2000.0
    """Fewer env steps of plateau than this: too little plateau, whatever the interval."""

    min_plateau_buckets: int = 16
    """Fewer time buckets of plateau than this: too little plateau (8 per half)."""

    confidence: float = 0.95
    """Two-sided level of every interval."""

    def background(self, plateau_env_steps: float) -> float:
        """The background creep allowed for over a plateau this long, bytes per env step."""
        scale = min(1.0, self.background_env_steps / max(plateau_env_steps, 1.0))
        return self.background_rate_bytes_per_step * scale


@dataclass(frozen=True)
class GrowthFit:
    """What :func:`classify_growth` found in one plateau series. Bytes and env steps."""

    kind: GrowthKind
    plateau_env_steps: float
    """Env steps covered by the plateau series."""

    late_rate_bytes_per_step: Estimate | None
    """Slope over the second half of the plateau (level shift removed), bytes per env step;
    its interval holds the background creep (:meth:`GrowthRule.background`)."""

    late_rate_statistical_bytes_per_step: Estimate | None
    """The late slope with its Newey–West interval alone (no background creep)."""

    early_rate_bytes_per_step: Estimate | None
    """Slope over the first half, bytes per env step."""

    late_rate_bytes_per_h: Estimate | None
    """The late slope against time, bytes per hour."""

    step_bytes: float | None
    """Size of the kept level shift, bytes (None without one)."""

    step_at_env_steps: float | None
    """Env steps since the plateau began at which the shift happened."""

    rise_bytes: float
    """Memory at the end of the plateau minus at its start (means of the first and last
    tenth), bytes; may be negative."""

    more_env_steps: float | None
    """For ``too little plateau``: about how many more env steps of plateau would decide."""


def _halves(x: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    middle = x[0] + (x[-1] - x[0]) / 2
    return x < middle, x >= middle


def _bic(resid: npt.NDArray[np.float64], k: int) -> float:
    n = len(resid)
    ssr = float(np.sum(resid**2))
    return n * math.log(max(ssr, 1e-12) / n) + k * math.log(n)


def _level_shift(
    x: npt.NDArray[np.float64], y: npt.NDArray[np.float64], rule: GrowthRule
) -> tuple[int, float] | None:
    """The index after which a level shift happens and its size, or None if no shift is kept."""
    n = len(y)
    if n < 8:
        return None
    signal = np.column_stack([y, np.ones(n), x - x[0]])
    try:
        breaks = ruptures.Binseg(model="linear", min_size=3, jump=1).fit(signal).predict(n_bkps=1)
    except ruptures.exceptions.BadSegmentationParameters:
        return None
    at = int(breaks[0])
    if not 3 <= at <= n - 3:
        return None
    # A step happens between a few buckets; a knee of a settling curve does not.
    around = float(np.median(y[at : at + 2]) - np.median(y[at - 2 : at]))
    shift = (np.arange(n) >= at).astype(np.float64)
    design_line = np.column_stack([np.ones(n), x])
    design_step = np.column_stack([np.ones(n), x, shift])
    line_coef, *_ = np.linalg.lstsq(design_line, y, rcond=None)
    step_coef, *_ = np.linalg.lstsq(design_step, y, rcond=None)
    height = float(step_coef[2])
    if abs(height) < rule.min_step_bytes or abs(around) < 0.5 * abs(height):
        return None
    # One more coefficient and the break's position: two more parameters for BIC.
    if _bic(y - design_step @ step_coef, 4) >= _bic(y - design_line @ line_coef, 2):
        return None
    return at, height


def _rate(
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64],
    shift: npt.NDArray[np.float64] | None,
    confidence: float,
) -> Estimate | None:
    regressors: dict[str, npt.NDArray[np.float64]] = {"x": x - x[0]}
    if shift is not None and 2 <= shift.sum() <= len(shift) - 2:
        regressors["shift"] = shift
    fit = fit_trend(y, regressors, confidence)
    return fit.coef("x") if fit is not None else None


def _widened(rate: Estimate | None, background: float) -> Estimate | None:
    if rate is None:
        return None
    half = math.hypot((rate.high - rate.low) / 2, background)
    return Estimate(rate.value, rate.value - half, rate.value + half)


def _rise_noise(
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64],
    shift: npt.NDArray[np.float64] | None,
    rule: GrowthRule,
) -> float:
    """The rise (:attr:`GrowthFit.rise_bytes`) that noise alone reaches at the rule's
    confidence, bytes: the half-width of the difference of two tenths' means, each of
    ``n // 10`` buckets scattered by the residual SD of the plateau's line (and level
    shift). On a short, noisy plateau the late slope's interval can exclude the threshold
    by chance (flat series of 2k–4k env steps and 0.5–5 MB of noise: 0.3% of them) while
    the memory rose by no more than its scatter."""
    columns = [np.ones_like(x), x - x[0]]
    if shift is not None:
        columns.append(shift)
    design = np.column_stack(columns)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    dof = len(y) - design.shape[1]
    if dof <= 0:
        return math.inf
    sd = math.sqrt(float(np.sum((y - design @ coef) ** 2)) / dof)
    z = NormalDist().inv_cdf(0.5 + rule.confidence / 2)
    return z * sd * math.sqrt(2 / max(1, len(y) // 10))


def _more_env_steps(late: Estimate, span: float, rule: GrowthRule) -> float:
    """Env steps of plateau to add before the late rate decides, if it stays where it is.

    The statistical half-width narrows like 1/length (at least), the background creep as
    :meth:`GrowthRule.background` says; at most ten times the plateau is proposed."""
    half = (late.high - late.low) / 2
    r = rule.min_rate_bytes_per_step
    for k in range(1, 12):
        longer = span * 1.25**k
        stat = half * span / longer
        if late.value - r > math.hypot(stat, rule.background(longer)) or r - late.value > stat:
            return longer - span
    return 10 * span


def classify_growth(
    env_steps: npt.ArrayLike,
    mem_bytes: npt.ArrayLike,
    t_s: npt.ArrayLike,
    rule: GrowthRule | None = None,
) -> GrowthFit:
    """Classify one plateau series (a pure function; the rule is the module docstring's).

    ``env_steps``, ``mem_bytes`` (RSS) and ``t_s`` are per time bucket, from the start of
    the plateau; non-finite rows are dropped. Rates are bytes per env step and per hour.
    """
    rule = rule or GrowthRule()
    x_all = np.asarray(env_steps, dtype=np.float64)
    y_all = np.asarray(mem_bytes, dtype=np.float64)
    t_all = np.asarray(t_s, dtype=np.float64)
    ok = np.isfinite(x_all) & np.isfinite(y_all) & np.isfinite(t_all)
    order = np.argsort(x_all[ok], kind="stable")
    x, y, t = x_all[ok][order], y_all[ok][order], t_all[ok][order]
    n = len(x)
    span = float(x[-1] - x[0]) if n else 0.0
    tenth = max(1, n // 10)
    rise = float(np.mean(y[-tenth:]) - np.mean(y[:tenth])) if n else 0.0
    short = n < rule.min_plateau_buckets or span < rule.min_plateau_steps
    if short:
        need = max(rule.min_plateau_steps - span, 0.0)
        if n and n < rule.min_plateau_buckets and span > 0:
            need = max(need, span * (rule.min_plateau_buckets / max(n, 1) - 1))
        return GrowthFit(
            kind="too little plateau",
            plateau_env_steps=span,
            late_rate_bytes_per_step=None,
            late_rate_statistical_bytes_per_step=None,
            early_rate_bytes_per_step=None,
            late_rate_bytes_per_h=None,
            step_bytes=None,
            step_at_env_steps=None,
            rise_bytes=rise,
            more_env_steps=max(need, 1.0),
        )

    found = _level_shift(x, y, rule)
    if found is not None and found[1] < 0:
        # A drop is memory given back (a trimmed heap, a freed cache), not a bound on
        # growth: as a regressor it would turn the regrowth after it into a slope. The
        # rates below then see the net movement across it.
        found = None
    shift = None
    if found is not None:
        shift = (np.arange(n) >= found[0]).astype(np.float64)
    early, late = _halves(x)
    conf = rule.confidence
    back = rule.background(span)
    late_stat = _rate(x[late], y[late], shift[late] if shift is not None else None, conf)
    late_rate = _widened(late_stat, back)
    early_rate = _rate(x[early], y[early], shift[early] if shift is not None else None, conf)
    hours = (t[late] - t[late][0]) / SECONDS_PER_HOUR
    late_h = _rate(hours, y[late], shift[late] if shift is not None else None, conf)
    r = rule.min_rate_bytes_per_step
    more = None
    if late_stat is None or late_rate is None:
        kind: GrowthKind = "too little plateau"
        more = span
    elif (
        early_rate is not None
        and early_rate.value > r
        and late_rate.high < early_rate.low
        and late_rate.value < rule.falling_ratio * early_rate.value
    ):
        kind = "settling"
    elif late_rate.low > r and rise >= max(rule.min_rise_bytes, _rise_noise(x, y, shift, rule)):
        if (
            span >= rule.min_sustained_env_steps
            or late_stat.low > rule.creep_ceiling_bytes_per_step
        ):
            kind = "sustained growth"
        else:
            kind = "too little plateau"
            more = rule.min_sustained_env_steps - span
    elif late_stat.high < r:
        if found is not None:
            kind = "one-time step"
        elif early_rate is not None and early_rate.low > r:
            kind = "settling"
        else:
            kind = "no growth"
    else:
        kind = "too little plateau"
        more = _more_env_steps(late_stat, span, rule)
    return GrowthFit(
        kind=kind,
        plateau_env_steps=span,
        late_rate_bytes_per_step=late_rate,
        late_rate_statistical_bytes_per_step=late_stat,
        early_rate_bytes_per_step=early_rate,
        late_rate_bytes_per_h=late_h,
        step_bytes=found[1] if found is not None else None,
        step_at_env_steps=float(x[found[0]] - x[0]) if found is not None else None,
        rise_bytes=rise,
        more_env_steps=more,
    )

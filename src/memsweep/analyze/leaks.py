"""Leak verdicts: tell a leak from the replay buffer filling up.

For every trial and role (and the trial's total) one of:

* ``no_growth``: after the buffer filled, memory did not grow (or no buffer and no growth);
* ``buffer_fill``: memory grew, and stored transitions explain the growth (the buffer
  has not filled yet, or the plateau is too short to test);
* ``unexplained_growth``: memory grows at X MB/h (CI …) after the plateau, or faster than
  the buffer explains before it: a leak, or a cache that is not bounded;
* ``unknown``: too little data to say.

**Multiple testing.** A sweep has many trials × roles; tested one by one at 95 %, about
one in forty would look like a leak by chance. A growth is flagged only when its p-value
survives the Benjamini–Hochberg correction over every test of the sweep (false-discovery
rate ``fdr``) and its rate is at least ``min_rate_mb_per_h``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from statsmodels.stats.multitest import multipletests

from memsweep.analyze.phases import RolePhases, TrialPhases
from memsweep.units import MB, Estimate, format_bytes, format_number

Verdict = Literal["no_growth", "buffer_fill", "unexplained_growth", "unknown"]


@dataclass(frozen=True)
class LeakVerdict:
    """The growth verdict of one role of one trial."""

    trial_id: str
    role: str
    """Process role or ``total``."""

    verdict: Verdict
    rate_mb_per_h: Estimate | None
    """Growth after the plateau (or beyond the buffer before it), MB/h."""

    rate_mb_per_1k_steps: Estimate | None
    """Growth after the plateau per 1000 env steps, MB."""

    text: str
    """The sentence the report prints."""

    @property
    def flagged(self) -> bool:
        return self.verdict == "unexplained_growth"


def classify(
    *,
    plateau_reached: bool,
    rate_mb_per_h: Estimate | None,
    significant: bool,
    fill_growing: bool,
    min_rate_mb_per_h: float,
) -> Verdict:
    """The verdict from the test's outcome (a pure function; see the module docstring)."""
    if rate_mb_per_h is not None and significant and rate_mb_per_h.value >= min_rate_mb_per_h:
        return "unexplained_growth"
    if plateau_reached and rate_mb_per_h is not None:
        return "no_growth"
    if fill_growing:
        return "buffer_fill"
    if rate_mb_per_h is not None:
        return "no_growth"
    return "unknown"


def _rate(role: RolePhases, plateau: bool) -> tuple[Estimate | None, float | None]:
    if plateau:
        return role.drift_bytes_per_h, role.drift_p_value
    return role.residual_drift_bytes_per_h, role.residual_drift_p_value


def _fill_growing(role: RolePhases) -> bool:
    slope = role.fill_bytes_per_transition
    return slope is not None and slope.low > 0


def leak_verdicts(
    trials: Sequence[TrialPhases], min_rate_mb_per_h: float = 1.0, fdr: float = 0.05
) -> tuple[LeakVerdict, ...]:
    """A verdict for every role of every trial, with Benjamini–Hochberg over the sweep."""
    keys: list[tuple[int, int]] = []
    p_values: list[float] = []
    for i, trial in enumerate(trials):
        for j, role in enumerate(trial.roles):
            _, p = _rate(role, trial.plateau_reached)
            if p is not None:
                keys.append((i, j))
                p_values.append(p)
    rejected: set[tuple[int, int]] = set()
    if p_values:
        reject = multipletests(p_values, alpha=fdr, method="fdr_bh")[0]
        rejected = {key for key, r in zip(keys, reject, strict=True) if r}

    out = []
    for i, trial in enumerate(trials):
        for j, role in enumerate(trial.roles):
            rate_bytes, _ = _rate(role, trial.plateau_reached)
            rate = rate_bytes.scaled(1 / MB) if rate_bytes else None
            per_k = role.drift_bytes_per_1k_steps
            verdict = classify(
                plateau_reached=trial.plateau_reached,
                rate_mb_per_h=rate,
                significant=(i, j) in rejected,
                fill_growing=_fill_growing(role),
                min_rate_mb_per_h=min_rate_mb_per_h,
            )
            out.append(
                LeakVerdict(
                    trial_id=trial.trial_id,
                    role=role.role,
                    verdict=verdict,
                    rate_mb_per_h=rate,
                    rate_mb_per_1k_steps=per_k.scaled(1 / MB) if per_k else None,
                    text=_text(verdict, trial, role, rate),
                )
            )
    return tuple(out)


def _ci(rate: Estimate) -> str:
    low, high = format_number(rate.low), format_number(rate.high)
    return f"{format_number(rate.value)} MB/h (CI {low} to {high})"


def _text(verdict: Verdict, trial: TrialPhases, role: RolePhases, rate: Estimate | None) -> str:
    if verdict == "unexplained_growth" and rate is not None:
        when = "after the plateau" if trial.plateau_reached else "beyond the buffer fill"
        per_k = role.drift_bytes_per_1k_steps
        steps = ""
        if per_k and trial.plateau_reached:
            steps = f", {format_bytes(per_k.value)} per 1k env steps"
        return f"unexplained growth of {_ci(rate)} {when}{steps}"
    if verdict == "no_growth" and rate is not None:
        if trial.plateau_reached:
            return f"no growth after plateau: drift {_ci(rate)}, not significant over the sweep"
        return f"no growth (buffer not full yet, this role does not hold it): drift {_ci(rate)}"
    if verdict == "buffer_fill":
        return _fill_text(trial, role, rate)
    if not trial.plateau_reached and trial.capacity > 0 and role.fill_bytes_per_transition:
        return "unknown: the buffer is not full and its fill cannot be told from a leak yet"
    return "unknown: too few samples after set-up to tell growth from noise"


def _fill_text(trial: TrialPhases, role: RolePhases, rate: Estimate | None) -> str:
    bpt = role.fill_bytes_per_transition
    per = f" ({format_bytes(bpt.value)} per transition)" if bpt else ""
    if trial.plateau_reached:
        return f"growth explained by buffer fill{per}; plateau too short to test for drift"
    spread = ""
    if rate is not None:
        spread = (
            f"; a leak up to {format_number(rate.high)} MB/h cannot be ruled out until the "
            "buffer is full"
        )
    return f"growth explained by buffer fill{per}{spread}"

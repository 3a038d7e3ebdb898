"""The answers in words: how an estimate, an effect and a growth verdict are printed,
and the headline lines the summary and the report open with."""

from __future__ import annotations

import math
from collections import Counter
from typing import TYPE_CHECKING

from memsweep.analyze.models import Effect, FittedModel
from memsweep.units import Estimate, format_bytes, format_level, format_number

if TYPE_CHECKING:
    from memsweep.analyze.analysis import Analysis


def term_unit(term: str) -> str:
    """The unit of a coefficient: bytes per unit of its column."""
    if term == "const" or ("[" in term.split(":", 1)[0] and ":" not in term):
        return "bytes"
    column = term.split(":", 1)[1] if term.split(":", 1)[0].endswith("]") else term
    units = {
        "replay_capacity": "bytes per transition",
        "model_params": "bytes per parameter",
        "num_workers": "bytes per env runner",
        "num_workers:model_params": "bytes per parameter per env runner",
    }
    return units.get(column, f"bytes per unit of {column}")


def _is_bytes(unit: str) -> bool:
    """Whether a figure in ``unit`` prints as a size (``361 MB``): a whole amount, a cost
    per env runner or per unit of a factor the user named (an env runner's or a batch
    element's memory reads best in MB/kB); per transition and per parameter stay bytes."""
    return (
        unit in ("bytes", "bytes per env runner")
        or unit.startswith("bytes vs")
        or unit.startswith("bytes per unit of ")
    )


def _figure(value: float, unit: str) -> str:
    return format_bytes(value) if _is_bytes(unit) else format_number(value)


def straddles_zero(estimate: Estimate) -> bool:
    """The interval holds both signs: the figure cannot be told from 0."""
    return estimate.low < 0 < estimate.high


def zero_text(estimate: Estimate, unit: str) -> str:
    """``not distinguishable from 0 (|x| < 24.7 kB)``: how a cost whose interval holds 0
    is printed, never as a signed figure."""
    bound = max(abs(estimate.low), abs(estimate.high))
    return f"not distinguishable from 0 (|x| < {_figure(bound, unit)})"


def estimate_text(estimate: Estimate, unit: str) -> tuple[str, str]:
    if straddles_zero(estimate):
        return zero_text(estimate, unit), ""
    return _figure(estimate.value, unit), (
        f"{_figure(estimate.low, unit)} – {_figure(estimate.high, unit)}"
    )


def effect_text(estimate: Estimate, unit: str, confidence: float) -> str:
    """One effect as the summary prints it: value, unit and interval, or "not
    distinguishable from 0" when the interval holds 0."""
    if straddles_zero(estimate):
        shown_unit = "" if _is_bytes(unit) else f" {unit}"
        return zero_text(estimate, unit) + shown_unit
    value, span = estimate_text(estimate, unit)
    if unit.startswith("bytes vs") or unit == "bytes":
        suffix = ""
    elif _is_bytes(unit):
        suffix = unit.removeprefix("bytes")  # "361 MB per env runner"
    else:
        suffix = f" {unit}"
    return f"{value}{suffix} ({format_level(confidence)} CI {span})"


def effect_line(model: FittedModel, name: str, framework: str | None = None) -> str | None:
    def matches(e: Effect) -> bool:
        return e.name == name and (framework is None or e.at.get("framework") in (framework, None))

    effect = next((e for e in model.effects if matches(e)), None)
    if effect is None:
        zero = next((e for e in model.zero_effects if matches(e)), None)
        if zero is None:
            return None
        return (
            effect_text(zero.estimate, zero.unit, model.confidence)
            + "; fixed at 0 in the fit (a cost is never negative)"
        )
    return effect_text(effect.estimate, effect.unit, model.confidence)


def effect_label(name: str, base: str | None) -> str:
    labels = {
        "bytes_per_transition": "replay buffer",
        "bytes_per_worker": "per env runner",
        "bytes_per_param": "per model parameter",
    }
    if name in labels:
        return labels[name]
    if name.startswith("bytes_per_unit["):
        return f"per unit of {name[len('bytes_per_unit[') : -1]}"
    factor, level = name.split("_offset[", 1)
    if factor == "framework":
        return f"{level[:-1]} vs {base}"
    return f"{factor}={level[:-1]} vs its base level"


def _loo(model: FittedModel) -> str:
    if not math.isfinite(model.loo_rel_error):
        return "n/a (a trial alone at its factor level cannot be left out)"
    return f"{format_bytes(model.loo_rmse_bytes)} = {model.loo_rel_error:.1%}"


def _at_peak(peak: FittedModel | None, name: str, framework: str | None) -> str:
    """``; at the peak: …``: the same effect in the peak model (largest Σ PSS), or "" when
    there is no peak model or it has no such term. A plateau is a time average; where a
    factor's memory comes and goes (PPO's batch, held while it learns, then freed), the
    peak is where its cost shows."""
    if peak is None:
        return ""
    text = effect_line(peak, name, framework)
    return f"; at the peak: {text}" if text else ""


def headline(analysis: Analysis) -> list[str]:
    """The answers in a few lines: cost per transition, worker, parameter, any other
    factor; categorical offsets; the buffer's own cost; growth."""
    lines = []
    model = analysis.models.get("plateau")
    if model is not None:
        every = (*model.effects, *model.zero_effects)
        base = next((e.at.get("framework") for e in every if "framework" in e.at), None)
        ref = every[0].at if every else {}
        names = list(dict.fromkeys(e.name for e in every if "_offset[" not in e.name))
        peak = analysis.models.get("peak")
        for name in names:
            text = effect_line(model, name, base)
            if text:
                lines.append(f"{effect_label(name, base)}: {text}{_at_peak(peak, name, base)}")
        for effect in model.effects:
            if "_offset[" in effect.name:
                text = effect_text(effect.estimate, effect.unit, model.confidence)
                lines.append(
                    f"{effect_label(effect.name, base)}: {text}{_at_peak(peak, effect.name, None)}"
                )
        where = ", ".join(
            f"{k}={format_number(v) if isinstance(v, float) else v}" for k, v in ref.items()
        )
        peak_fit = (
            f"; peak model R² {peak.r2:.3f}, leave-one-out error {_loo(peak)}"
            if peak is not None
            else ""
        )
        lines.append(
            f"(plateau model on {model.n_trials} trials, OLS with non-negative per-unit costs: "
            f"R² {model.r2:.3f}, leave-one-out error {_loo(model)}{peak_fit}"
            + (f"; marginal costs at {where})" if where else ")")
        )
    analytic = analysis.models.analytic_bytes_per_transition
    within = analysis.models.within_trial_bytes_per_transition
    if within is not None:
        lines.append(
            "fill slope within trials (buffer and warm-up together): "
            + effect_text(within, "bytes per transition", analysis.options.confidence)
            + (
                f"; analytic footprint of obs + next obs: {format_number(analytic)} bytes"
                if analytic
                else ""
            )
        )
    buffer = analysis.models.buffer_bytes_per_transition
    if buffer is not None:
        lines.append(
            "buffer's own cost within trials (late fill, net of growth without the buffer): "
            + effect_text(buffer, "bytes per transition", analysis.options.confidence)
        )
    notes = analysis.models.buffer_notes
    if notes:
        lines.append(
            f"buffer's own cost not separated from warm-up in {len(notes)} trial(s) "
            f"(each one's reason is in the report's Trials notes), e.g. {notes[0]}"
        )
    lines.append(growth_headline(analysis))
    return lines


def growth_headline(analysis: Analysis) -> str:
    """One line: how many trials grow without bound, and the verdict of every trial total."""
    totals = [v for v in analysis.verdicts if v.role == "total"]
    flagged = [v for v in totals if v.flagged]
    counts = Counter(v.verdict for v in totals)
    spread = ", ".join(f"{n} {kind}" for kind, n in counts.most_common())
    head = f"growth: {len(flagged)} trial(s) with sustained growth ({spread})"
    if not flagged:
        return head
    horizon = format_number(analysis.options.horizon_env_steps)
    details = "; ".join(
        f"{v.trial_id} +{format_number(v.rate_mb_per_1m_steps.value)} MB per 1M env steps"
        + (
            f" (+{format_bytes(v.projected_bytes.value)} over {horizon} env steps if it holds)"
            if v.projected_bytes
            else ""
        )
        for v in flagged
        if v.rate_mb_per_1m_steps is not None
    )
    return f"{head}: {details}"

"""The report's sections as blocks: answers, caveats, factors, factor models, per-role
models, trials, growth verdicts and plots."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from memsweep.analyze.models import FittedModel
from memsweep.report.blocks import Block, Bullets, Heading, Image, Para, Table
from memsweep.report.headline import (
    effect_label,
    effect_line,
    estimate_text,
    headline,
    term_unit,
)
from memsweep.report.plots import Plot
from memsweep.units import format_bytes, format_interval, format_level, format_number

if TYPE_CHECKING:
    from memsweep.analyze.analysis import Analysis


def growth_blocks(analysis: Analysis) -> list[Block]:
    """The report's growth section: the rule, then every role's verdict that is not 'no growth'."""
    rule = replace(analysis.options.growth, confidence=analysis.options.confidence)
    threshold = format_number(rule.min_rate_bytes_per_step)  # bytes/step = MB per 1M steps
    background = format_number(rule.background_rate_bytes_per_step)
    blocks: list[Block] = [
        Heading("Growth verdicts per role"),
        Para(
            "Each role's RSS after its buffer filled (the plateau), against env steps; the "
            "rate that decides is the slope over the plateau's last half, with its "
            f"{format_level(rule.confidence)} Newey–West interval widened by the creep a leak-free "
            f"RLlib run shows by itself ({background} MB per 1M env steps, less on plateaus "
            f"longer than {format_number(rule.background_env_steps)} env steps). "
            f"**Sustained growth**: that interval lies above {threshold} MB per 1M env "
            "steps, the rate has not fallen to under "
            f"{rule.falling_ratio:.0%} of the first half's, and memory rose by at least "
            f"{format_bytes(rule.min_rise_bytes)} over the plateau, and by more than its "
            "scatter reaches by chance. **Settling**: the rate fell. "
            "**One-time step**: a level shift of at least "
            f"{format_bytes(rule.min_step_bytes)} (a ruptures change point), bounded after "
            "it. **No growth**: the rate's statistical interval lies below the threshold. "
            "**Too little plateau**: fewer than "
            f"{format_number(rule.min_plateau_steps)} env steps or "
            f"{rule.min_plateau_buckets} time buckets of plateau, or an interval that "
            "straddles the threshold (the text says how many more env steps would decide). "
            "Sustained growth is projected over "
            f"{format_number(analysis.options.horizon_env_steps)} env steps (`--horizon`). "
            "The thresholds were chosen on a corpus of real runs with planted leaks "
            "(docs/growth.md)."
        ),
    ]
    rows = tuple(
        (v.trial_id, v.role, v.verdict, v.text)
        for v in analysis.verdicts
        if v.role != "total" and v.verdict != "no growth"
    )
    if rows:
        blocks.append(Table(("trial", "role", "verdict", "detail"), rows))
    else:
        blocks.append(Para("Every role of every trial: no growth."))
    return blocks


def _effect_rows(model: FittedModel) -> list[tuple[str, ...]]:
    """(effect, estimate, interval, unit, at) rows of ``model.effects``, where rows that
    print the same but for the point they are taken at (a per-unit cost without an
    interaction is the same at every framework) are one row whose ``at`` names every
    value of the factor that differs (``framework=torch or tf2``)."""
    merged: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    for e in model.effects:
        value, span = estimate_text(e.estimate, e.unit)
        merged.setdefault((e.name, value, span, e.unit), []).append(e.at)
    rows: list[tuple[str, ...]] = []
    for (name, value, span, unit), points in merged.items():
        cells = []
        for factor in dict.fromkeys(k for at in points for k in at):
            seen = dict.fromkeys(
                format_number(v) if isinstance(v, float) else str(v)
                for v in (at.get(factor) for at in points)
                if v is not None
            )
            cells.append(f"{factor}={' or '.join(seen)}")
        rows.append((name, value, span, unit, ", ".join(cells)))
    return rows


def _model_blocks(model: FittedModel) -> list[Block]:
    level = f"{format_level(model.confidence)}"
    blocks: list[Block] = [
        Heading(f"Model: {model.name}", 3),
        Para(
            f"`{model.name} = {model.formula.describe()}` on {model.n_trials} trials. "
            f"R² {model.r2:.4f} (adjusted {model.adj_r2:.4f}), AIC {model.aic:.1f}, residual SD "
            f"{format_bytes(model.resid_sd_bytes)}, "
            f"leave-one-out RMSE {format_bytes(model.loo_rmse_bytes)} "
            f"({model.loo_rel_error:.1%} of the mean)."
        ),
    ]
    if model.dropped:
        blocks.append(Bullets(model.dropped))
    rows: list[tuple[str, ...]] = []
    for c in model.coefficients:
        unit = term_unit(c.term)
        value, span = estimate_text(c.estimate, unit)
        rows.append((c.term, value, span, unit, f"{c.p_value:.2g}"))
    blocks.append(Table(("term", "estimate", f"{level} CI", "unit", "p"), tuple(rows)))
    if model.effects:
        rows = _effect_rows(model)
        for e in model.zero_effects:
            value, span = estimate_text(e.estimate, e.unit)
            rows.append((e.name, f"0 (fixed; unconstrained: {value})", span, e.unit, "any"))
        blocks.append(Table(("effect", "estimate", f"{level} CI", "unit", "at"), tuple(rows)))
    if model.form_choices:
        rows = [
            (
                c.factor,
                c.form,
                format_bytes(c.loo_rmse_bytes),
                f"{c.aic:.1f}",
                "✔" if c.chosen else "",
            )
            for c in model.form_choices
        ]
        blocks.append(
            Para(
                "Form of each factor, by leave-one-out RMSE "
                "(linear kept unless another form is >5 % better):"
            )
        )
        blocks.append(Table(("factor", "form", "LOO RMSE", "AIC", "chosen"), tuple(rows)))
    return blocks


def _factor_cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "?"
    return format_number(value) if isinstance(value, int | float) else str(value)


def _trial_factor_names(analysis: Analysis) -> list[str]:
    """The factors shown per trial: the sweep's (``model`` as its label), none for trials
    of a trainable that recorded no factor."""
    return list(analysis.data.factor_names)


def _trial_header(analysis: Analysis) -> tuple[str, ...]:
    short = {"replay_capacity": "capacity", "num_workers": "workers"}
    return (
        "trial",
        *(short.get(n, n) for n in _trial_factor_names(analysis)),
        "status",
        "baseline",
        "fill B/transition",
        "buffer B/transition",
        "plateau",
        "peak",
        "Σ VmHWM",
        "growth verdict",
    )


def _trial_rows(analysis: Analysis) -> tuple[tuple[str, ...], ...]:
    rows = []
    names = _trial_factor_names(analysis)
    for t in analysis.trials:
        total = t.total
        plateau = total.plateau
        if plateau is not None:
            plateau_text = format_interval(plateau)
        elif total.plateau_extrapolated is not None:
            plateau_text = "≈ " + format_interval(total.plateau_extrapolated) + " (extrapolated)"
        else:
            plateau_text = "n/a"
        bpt = total.fill_bytes_per_transition
        buffer = total.buffer_bytes_per_transition
        f = t.factors
        rows.append(
            (
                t.trial_id,
                *(_factor_cell(f.get(n)) for n in names),
                str(f.get("status")),
                format_bytes(total.baseline.value) if total.baseline else "n/a",
                format_number(bpt.value) if bpt else "n/a",
                estimate_text(buffer, "bytes per transition")[0] if buffer else "n/a",
                plateau_text,
                format_bytes(total.peak_bytes),
                format_bytes(total.hwm_sum_bytes),
                analysis.verdict(t.trial_id).text,
            )
        )
    return tuple(rows)


def report_blocks(analysis: Analysis, plots: tuple[Plot, ...]) -> list[Block]:
    data = analysis.data
    metric = (
        "PSS (shared pages split between sharers, so nothing is counted twice)"
        if data.metric == "pss_bytes"
        else "RSS"
    )
    blocks: list[Block] = [
        Heading(f"Memory analysis: {analysis.name}", 1),
        Para(
            f"Results `{analysis.uri}`: {len(analysis.trials)} of {len(data.trials)} trials "
            "analysed, "
            f"{data.sample_rows:,} sample rows. Memory is the sum over a trial's processes of "
            f"{metric}; a peak is the largest such sum at one moment (read once a second: "
            "a shorter spike can fall between reads; the Trials table's Σ VmHWM, each process's "
            "kernel high-water mark summed, bounds it from above). "
            f"Intervals are {format_level(analysis.options.confidence)}."
        ),
        Heading("Answers"),
        Bullets(tuple(headline(analysis))),
    ]
    if analysis.missing or analysis.notes or analysis.models.errors:
        blocks.append(Heading("What is missing, and caveats"))
        blocks.append(
            Bullets(tuple(analysis.missing) + tuple(analysis.notes) + analysis.models.errors)
        )
    blocks.append(Heading("Factors"))
    blocks.append(
        Table(
            ("factor", "values", "in model", "note"),
            tuple(
                (
                    f.name,
                    ", ".join(
                        format_number(v) if isinstance(v, float) else str(v) for v in f.values
                    ),
                    "yes" if f.in_model else "no",
                    f.note,
                )
                for f in analysis.models.factors
            ),
        )
    )
    blocks.append(Heading("Factor models"))
    blocks.append(
        Para(
            "Trial-level plateau (memory once the buffer is full, measured when it filled) and "
            "peak, fitted by OLS on every factor that varies (a number: a per-unit cost; a "
            "label: an offset from its base level). The form of each numeric factor is chosen "
            "by leave-one-out cross-validation; interactions are added where the design allows "
            "and AIC improves by more than 2. The fit is constrained: a per-unit cost whose fit "
            "is negative while its interval reaches 0 is fixed at 0 (memory does not fall when "
            "a factor grows) and the rest refitted; a factor the trials cannot fit is left out "
            "and said so, the others are still fitted. A cost whose interval holds 0 is printed "
            "as not distinguishable from 0. Only trials that reached their plateau are fitted."
        )
    )
    for name in ("plateau", "peak"):
        model = analysis.models.get(name)
        if model is not None:
            blocks += _model_blocks(model)
    role_rows = []
    total_model = analysis.models.get("plateau")
    effect_names = list(
        dict.fromkeys(
            e.name
            for e in ((*total_model.effects, *total_model.zero_effects) if total_model else ())
            if "_offset[" not in e.name
        )
    )
    for role in analysis.models.roles:
        model = analysis.models.get(f"plateau[{role}]")
        if model is None:
            continue
        cells = [role, f"{model.r2:.3f}", format_bytes(model.loo_rmse_bytes)]
        every = (*model.effects, *model.zero_effects)
        base = next((e.at.get("framework") for e in every if "framework" in e.at), None)
        for effect in effect_names:
            cells.append(effect_line(model, effect, base) or "—")
        role_rows.append(tuple(cells))
    if role_rows:
        blocks.append(Heading("Per role (plateau)", 3))
        blocks.append(
            Table(
                ("role", "R²", "LOO RMSE", *(effect_label(n, None) for n in effect_names)),
                tuple(role_rows),
            )
        )
    blocks.append(Heading("Trials"))
    blocks.append(Table(_trial_header(analysis), _trial_rows(analysis)))
    trial_notes = tuple(f"{t.trial_id}: {note}" for t in analysis.trials for note in t.notes)
    trial_notes += tuple(
        f"{t.trial_id}: buffer cost: {t.total.buffer_note}"
        for t in analysis.trials
        if t.total.buffer_note
    )
    if trial_notes:
        blocks.append(Bullets(trial_notes))
    blocks += growth_blocks(analysis)
    blocks.append(Heading("Plots"))
    for plot in plots:
        blocks += [Heading(plot.title, 3), Para(plot.caption), Image(plot)]
    return blocks

"""The analysis as people and tools read it: report.md, report.html, models.json, a summary.

The report is built once as a list of blocks (heading, paragraph, list, table, image)
and rendered twice, to Markdown and to a self-contained HTML page (PNGs inlined as
base64, no external file, script or style sheet).
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memsweep.analyze.models import Effect, FittedModel
from memsweep.report.plots import Plot, write_plots
from memsweep.store import is_remote
from memsweep.units import (
    Estimate,
    format_bytes,
    format_interval,
    format_number,
    json_ready,
)

if TYPE_CHECKING:
    from memsweep.analyze.analysis import Analysis

MODELS_JSON_VERSION = 1


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Para:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Image:
    plot: Plot


Block = Heading | Para | Bullets | Table | Image


@dataclass(frozen=True)
class ReportFiles:
    """What ``write_report`` wrote."""

    folder: Path
    markdown: Path
    html: Path
    models_json: Path
    plots: tuple[Path, ...]


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
    return unit in ("bytes", "bytes per env runner") or unit.startswith("bytes vs")


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


def _estimate_text(estimate: Estimate, unit: str) -> tuple[str, str]:
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
    value, span = _estimate_text(estimate, unit)
    if unit.startswith("bytes vs") or unit == "bytes":
        suffix = ""
    elif unit == "bytes per env runner":
        suffix = " per env runner"
    else:
        suffix = f" {unit}"
    return f"{value}{suffix} ({confidence:.0%} CI {span})"


def _effect_line(model: FittedModel, name: str, framework: str | None = None) -> str | None:
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


def _effect_label(name: str, base: str | None) -> str:
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
        for name in names:
            text = _effect_line(model, name, base)
            if text:
                lines.append(f"{_effect_label(name, base)}: {text}")
        for effect in model.effects:
            if "_offset[" in effect.name:
                text = effect_text(effect.estimate, effect.unit, model.confidence)
                lines.append(f"{_effect_label(effect.name, base)}: {text}")
        where = ", ".join(
            f"{k}={format_number(v) if isinstance(v, float) else v}" for k, v in ref.items()
        )
        loo = (
            f"{format_bytes(model.loo_rmse_bytes)} = {model.loo_rel_error:.1%}"
            if math.isfinite(model.loo_rel_error)
            else "n/a (a trial alone at its factor level cannot be left out)"
        )
        lines.append(
            f"(plateau model on {model.n_trials} trials, OLS with non-negative per-unit costs: "
            f"R² {model.r2:.3f}, leave-one-out error {loo}"
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
            f" (+{format_bytes(v.projected_bytes.value)} over {horizon} env steps)"
            if v.projected_bytes
            else ""
        )
        for v in flagged
        if v.rate_mb_per_1m_steps is not None
    )
    return f"{head}: {details}"


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
            f"{rule.confidence:.0%} Newey–West interval widened by the creep a leak-free "
            f"RLlib run shows by itself ({background} MB per 1M env steps, less on plateaus "
            f"longer than {format_number(rule.background_env_steps)} env steps). "
            f"**Sustained growth**: that interval lies above {threshold} MB per 1M env "
            "steps, the rate has not fallen to under "
            f"{rule.falling_ratio:.0%} of the first half's, and memory rose by at least "
            f"{format_bytes(rule.min_rise_bytes)} over the plateau. **Settling**: the rate fell. "
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


def _model_blocks(model: FittedModel) -> list[Block]:
    level = f"{model.confidence:.0%}"
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
    rows = []
    for c in model.coefficients:
        unit = term_unit(c.term)
        value, span = _estimate_text(c.estimate, unit)
        rows.append((c.term, value, span, unit, f"{c.p_value:.2g}"))
    blocks.append(Table(("term", "estimate", f"{level} CI", "unit", "p"), tuple(rows)))
    if model.effects:
        rows = []
        for e in model.effects:
            value, span = _estimate_text(e.estimate, e.unit)
            at = ", ".join(
                f"{k}={format_number(v) if isinstance(v, float) else v}" for k, v in e.at.items()
            )
            rows.append((e.name, value, span, e.unit, at))
        for e in model.zero_effects:
            value, span = _estimate_text(e.estimate, e.unit)
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
                _estimate_text(buffer, "bytes per transition")[0] if buffer else "n/a",
                plateau_text,
                format_bytes(total.peak_bytes),
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
            f"{metric}; the true peak comes from each process's VmHWM. "
            f"Intervals are {analysis.options.confidence:.0%}."
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
            cells.append(_effect_line(model, effect, base) or "—")
        role_rows.append(tuple(cells))
    if role_rows:
        blocks.append(Heading("Per role (plateau)", 3))
        blocks.append(
            Table(
                ("role", "R²", "LOO RMSE", *(_effect_label(n, None) for n in effect_names)),
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


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list[Block]) -> str:
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"{'#' * block.level} {block.text}\n")
        elif isinstance(block, Para):
            out.append(block.text + "\n")
        elif isinstance(block, Bullets):
            out.append("\n".join(f"- {item}" for item in block.items) + "\n")
        elif isinstance(block, Table):
            out.append("| " + " | ".join(_md_cell(h) for h in block.header) + " |")
            out.append("|" + "---|" * len(block.header))
            out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
            out.append("")
        else:
            out.append(f"![{block.plot.title}]({block.plot.name})\n")
    return "\n".join(out)


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.85em}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3} code{background:#f3f3f3;padding:0 .2em} img{max-width:100%}
"""


def _inline_code(text: str) -> str:
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def to_html(blocks: list[Block], folder: Path, title: str) -> str:
    out = [
        "<!DOCTYPE html>",
        f"<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body>",
    ]
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"<h{block.level}>{html.escape(block.text)}</h{block.level}>")
        elif isinstance(block, Para):
            out.append(f"<p>{_inline_code(block.text)}</p>")
        elif isinstance(block, Bullets):
            out.append(
                "<ul>" + "".join(f"<li>{_inline_code(i)}</li>" for i in block.items) + "</ul>"
            )
        elif isinstance(block, Table):
            head = "".join(f"<th>{html.escape(h)}</th>" for h in block.header)
            body = "".join(
                "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                for row in block.rows
            )
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        else:
            data = base64.b64encode((folder / block.plot.name).read_bytes()).decode("ascii")
            out.append(
                f"<img alt='{html.escape(block.plot.title)}' src='data:image/png;base64,{data}'>"
            )
    out.append("</body></html>")
    return "\n".join(out)


def _model_json(model: FittedModel) -> dict[str, Any]:
    return {
        "formula": model.formula.describe(),
        "forms": {
            f.factor: {"form": f.kind, "power": f.power, "scale": f.scale, "column": f.column}
            for f in model.formula.forms
        },
        "levels": {name: list(levels) for name, levels in model.formula.levels},
        "interactions": [list(pair) for pair in model.formula.interactions],
        "n_trials": model.n_trials,
        "trial_ids": list(model.trial_ids),
        "r2": model.r2,
        "adj_r2": model.adj_r2,
        "aic": model.aic,
        "resid_sd_bytes": model.resid_sd_bytes,
        "loo_rmse_bytes": model.loo_rmse_bytes,
        "loo_rel_error": model.loo_rel_error,
        "confidence": model.confidence,
        "coefficients": [
            {
                "term": c.term,
                "unit": term_unit(c.term),
                **c.estimate.to_json(),
                "std_err": c.std_err,
                "p_value": c.p_value,
            }
            for c in model.coefficients
        ],
        "effects": [
            {"name": e.name, "unit": e.unit, **e.estimate.to_json(), "at": e.at}
            for e in model.effects
        ],
        "form_choices": [
            {
                "factor": c.factor,
                "form": c.form,
                "loo_rmse_bytes": c.loo_rmse_bytes,
                "aic": c.aic,
                "chosen": c.chosen,
            }
            for c in model.form_choices
        ],
        "ranges": {k: list(v) for k, v in model.ranges.items()},
        "dropped": list(model.dropped),
        "zero_effects": [
            {"name": e.name, "unit": e.unit, **e.estimate.to_json(), "fixed_at": 0.0}
            for e in model.zero_effects
        ],
    }


def _opt(estimate: Estimate | None) -> dict[str, float | None] | None:
    return estimate.to_json() if estimate is not None else None


def models_document(analysis: Analysis) -> dict[str, Any]:
    """Every fitted number, for other tools (``models.json``). Bytes, seconds, MB/h."""
    trials = []
    for t in analysis.trials:
        trials.append(
            {
                "trial_id": t.trial_id,
                "factors": t.factors,
                "capacity": t.capacity,
                "setup_s": t.setup_s,
                "plateau_start_s": t.plateau_start_s,
                "plateau_reached": t.plateau_reached,
                "fill_fraction": t.fill_fraction,
                "env_steps": t.env_steps,
                "duration_s": t.duration_s,
                "notes": list(t.notes),
                "roles": {
                    r.role: {
                        "baseline_bytes": _opt(r.baseline),
                        "fill_bytes_per_transition": _opt(r.fill_bytes_per_transition),
                        "plateau_bytes": _opt(r.plateau),
                        "plateau_extrapolated_bytes": _opt(r.plateau_extrapolated),
                        "drift_bytes_per_h": _opt(r.drift_bytes_per_h),
                        "drift_bytes_per_1k_steps": _opt(r.drift_bytes_per_1k_steps),
                        "peak_bytes": r.peak_bytes,
                        "peak_sampled_bytes": r.peak_sampled_bytes,
                        "buffer_bytes_per_transition": _opt(r.buffer_bytes_per_transition),
                        "buffer_note": r.buffer_note,
                        "verdict": next(
                            (
                                {
                                    "verdict": v.verdict,
                                    "text": v.text,
                                    "rate_mb_per_h": _opt(v.rate_mb_per_h),
                                    "rate_mb_per_1m_env_steps": _opt(v.rate_mb_per_1m_steps),
                                    "projected_bytes": _opt(v.projected_bytes),
                                    "horizon_env_steps": v.horizon_env_steps,
                                }
                                for v in analysis.verdicts
                                if v.trial_id == t.trial_id and v.role == r.role
                            ),
                            None,
                        ),
                    }
                    for r in t.roles
                },
            }
        )
    document: dict[str, Any] = json_ready(
        {
            "version": MODELS_JSON_VERSION,
            "sweep": analysis.name,
            "uri": analysis.uri,
            "metric": analysis.data.metric,
            "confidence": analysis.options.confidence,
            "sample_rows": analysis.data.sample_rows,
            "factors": [
                {"name": f.name, "values": list(f.values), "in_model": f.in_model, "note": f.note}
                for f in analysis.models.factors
            ],
            "models": {name: _model_json(m) for name, m in analysis.models.models.items()},
            "model_errors": list(analysis.models.errors),
            "within_trial_bytes_per_transition": _opt(
                analysis.models.within_trial_bytes_per_transition
            ),
            "analytic_bytes_per_transition": analysis.models.analytic_bytes_per_transition,
            "buffer_bytes_per_transition": _opt(analysis.models.buffer_bytes_per_transition),
            "factor_names": list(analysis.data.factor_names),
            "system_bytes_per_node": analysis.system_bytes_per_node,
            "trials": trials,
            "missing": list(analysis.missing),
            "notes": list(analysis.notes),
            "timings_s": analysis.timings_s,
        }
    )
    return document


def write_report(analysis: Analysis, folder: Path | None = None) -> ReportFiles:
    """Write ``analysis/`` (next to the results when they are local, else ``folder``)."""
    if folder is None:
        if is_remote(analysis.uri):
            raise ValueError("a remote results folder needs an explicit local output folder")
        folder = Path(analysis.uri) / "analysis"
    folder.mkdir(parents=True, exist_ok=True)
    plots = write_plots(analysis, folder)
    blocks = report_blocks(analysis, plots)
    markdown = folder / "report.md"
    markdown.write_text(to_markdown(blocks), encoding="utf-8")
    page = folder / "report.html"
    page.write_text(to_html(blocks, folder, f"memsweep: {analysis.name}"), encoding="utf-8")
    models = folder / "models.json"
    models.write_text(
        json.dumps(models_document(analysis), indent=1, allow_nan=False), encoding="utf-8"
    )
    return ReportFiles(folder, markdown, page, models, tuple(folder / p.name for p in plots))


def summary_text(analysis: Analysis, files: ReportFiles | None = None) -> str:
    """The short plain-text summary the CLI prints."""
    reached = sum(t.plateau_reached for t in analysis.trials)
    lines = [
        f"{analysis.name}: {len(analysis.trials)} trials analysed ({reached} reached their "
        f"plateau), {analysis.data.sample_rows:,} sample rows in "
        f"{analysis.timings_s.get('analysis_s', math.nan):.1f} s",
    ]
    lines += [f"  {line}" for line in headline(analysis)]
    if analysis.missing:
        lines.append(
            f"  missing ({len(analysis.missing)}): "
            + "; ".join(analysis.missing[:3])
            + (" …" if len(analysis.missing) > 3 else "")
        )
    for note in analysis.notes:
        lines.append(f"  note: {note}")
    for error in analysis.models.errors:
        lines.append(f"  not fitted: {error}")
    if files is not None:
        lines.append(
            f"report: {files.markdown} (also report.html, models.json, {len(files.plots)} plots)"
        )
    return "\n".join(lines)

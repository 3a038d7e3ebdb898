"""``models.json``: every fitted number of an analysis, for other tools. Bytes, seconds,
MB/h; the layout is versioned by :data:`MODELS_JSON_VERSION`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from memsweep.analyze.models import FittedModel
from memsweep.report.headline import term_unit
from memsweep.units import Estimate, json_ready

if TYPE_CHECKING:
    from memsweep.analyze.analysis import Analysis

MODELS_JSON_VERSION = 1


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
                        "hwm_sum_bytes": r.hwm_sum_bytes,
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

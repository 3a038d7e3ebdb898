"""Predict a configuration's memory from the fitted models, and the inverse: what fits.

A prediction gives, per role and in total, the plateau (buffer full) and the peak, each
with a prediction interval for a new trial, plus the Ray system processes a node also
runs (measured, constant). It warns when a factor lies outside the measured range.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
import scipy.linalg

from memsweep.analyze.models import FittedModel, ModelSet
from memsweep.errors import DataError, UsageError
from memsweep.units import (
    Estimate,
    as_written,
    format_bytes,
    format_level,
    format_number,
    natural_order,
    parse_model,
)

if TYPE_CHECKING:
    from memsweep.analyze.analysis import Analysis
    from memsweep.analyze.leaks import GrowthVerdict


@dataclass(frozen=True)
class PredictPoint:
    """A configuration to predict. ``None`` means: the sweep's only value of that factor."""

    replay_capacity: int | None = None
    """Replay-buffer capacity, transitions."""

    num_workers: int | None = None
    """Remote env runners."""

    model: str | None = None
    """Dense sizes ``512,512`` or a model label from the sweep (``c32k8s4-c64k4s2+512``)."""

    framework: str | None = None
    """``torch``, ``tf2`` or ``tf2-eager``."""

    model_params: int | None = None
    """Parameters of one model copy; estimated from ``model`` when not given."""

    settings: tuple[tuple[str, float | str], ...] = ()
    """Any factor by name (``--set NAME=VALUE``): a factor of ``factors_json`` such as
    ``train_batch_size_per_learner`` or ``env_config.size``, or a built-in one (then it
    wins over the flag of the same name)."""


@dataclass(frozen=True)
class RolePrediction:
    """Predicted memory of one role (or ``total``), bytes, with prediction intervals."""

    role: str
    plateau: Estimate
    peak: Estimate | None


@dataclass(frozen=True)
class Prediction:
    """Predicted memory of a configuration."""

    point: dict[str, float | str]
    """The resolved factor values used."""

    model_params_source: str
    """``given``, ``measured`` (the sweep ran this model) or ``estimated`` (from layer sizes)."""

    roles: tuple[RolePrediction, ...]
    total: RolePrediction
    system_bytes: float
    """Ray's own processes on a node (raylet, GCS, dashboard, idle workers): measured median.
    Not the driver, not memsweep's samplers."""

    total_with_system: RolePrediction
    """``total`` plus ``system_bytes`` plus ``driver_bytes``: what the node running the
    trial and its driver needs (memsweep's samplers not included)."""

    warnings: tuple[str, ...]
    """Extrapolation and estimation warnings, one sentence each."""

    confidence: float

    driver_bytes: float = 0.0
    """The process that ran Tune, measured in the sweep (``memsweep run``'s own driver; the
    user's own script takes its place): included in ``total_with_system``."""

    sampler_bytes: float = 0.0
    """memsweep's sampler actor per node, measured: included in no figure (it runs only
    while memsweep measures)."""


NODE_ROW = "total + ray + driver"
"""The row of a prediction that adds Ray's own processes and the Tune driver to the total."""


def _measured_values(analysis: Analysis, factor: str) -> list[float | str]:
    info = next((f for f in analysis.models.factors if f.name == factor), None)
    return list(info.values) if info else []


def _resolve_params(
    analysis: Analysis, point: PredictPoint, framework: str
) -> tuple[float, str, str]:
    """(model_params, source, label) for the point's model."""
    trials = analysis.trial_table
    label = point.model
    if point.model_params is not None:
        return float(point.model_params), "given", label or "?"
    if label is None:
        labels = trials["model"].dropna().unique()
        if len(labels) != 1:
            raise UsageError(
                f"--model is required: the sweep measured {len(labels)} models "
                f"({', '.join(map(str, natural_order(labels.tolist())))})"
            )
        label = str(labels[0])
    label, hidden = parse_model(label)
    known = trials[trials["model"] == label]
    if len(known) and known["model_params"].notna().any():
        same = known[known["framework"] == framework]["model_params"].dropna()
        params = same if len(same) else known["model_params"].dropna()
        return float(params.median()), "measured", label
    if hidden is None:
        raise UsageError(
            f"--model {label}: not a model of this sweep and not plain layer sizes; "
            "give its parameter count with --model-params"
        )
    estimate = estimate_params(hidden, _mlp_examples(trials), _obs_inputs(trials))
    if estimate is None:
        raise UsageError(
            f"--model {label}: the sweep has no dense-only model to scale its parameter count "
            "from; give it with --model-params"
        )
    return estimate, "estimated", label


def _mlp_examples(trials: pd.DataFrame) -> list[tuple[tuple[int, ...], float]]:
    out = []
    for label, params in trials.groupby("model")["model_params"].median().items():
        _, hidden = parse_model(str(label))
        if hidden is not None and math.isfinite(params):
            out.append((hidden, float(params)))
    return out


def _obs_inputs(trials: pd.DataFrame) -> float | None:
    obs = trials["obs_bytes"].dropna()
    return float(obs.median()) / 4 if len(obs) else None


def _inner_params(hidden: Sequence[int]) -> float:
    """Parameters between the first and last dense layer (weights + biases), plus the first bias."""
    return float(hidden[0] + sum((a + 1) * b for a, b in itertools.pairwise(hidden)))


def estimate_params(
    hidden: Sequence[int],
    examples: Sequence[tuple[Sequence[int], float]],
    inputs_guess: float | None = None,
) -> float | None:
    """Parameters of a dense net with layer sizes ``hidden``, scaled from measured nets.

    A dense net's parameters are ``d_in·h1 + inner(h) + d_out·(h_k + 1)`` with unknown input
    width ``d_in`` and output width ``d_out`` (all heads together). Two or more measured
    nets determine both (least squares); with one, ``d_in`` is taken from the observation
    size (float32 elements) and ``d_out`` solved for.
    """
    distinct = {tuple(h): p for h, p in examples}
    if not distinct:
        return None
    if len(distinct) >= 2:
        a = np.array([[h[0], h[-1] + 1] for h in distinct], dtype=np.float64)
        b = np.array([p - _inner_params(h) for h, p in distinct.items()], dtype=np.float64)
        (d_in, d_out) = scipy.linalg.lstsq(a, b)[0]
    else:
        ((h, p),) = distinct.items()
        d_in = inputs_guess if inputs_guess is not None else 0.0
        d_out = (p - _inner_params(h) - d_in * h[0]) / (h[-1] + 1)
    d_in, d_out = max(float(d_in), 0.0), max(float(d_out), 1.0)
    return d_in * hidden[0] + _inner_params(hidden) + d_out * (hidden[-1] + 1)


BUILTIN_FLAGS = {
    "replay_capacity": "--replay-capacity",
    "num_workers": "--num-workers",
    "framework": "--framework",
    "model": "--model",
    "model_params": "--model-params",
}


def _with_settings(point: PredictPoint) -> PredictPoint:
    """Built-in factors given by ``--set`` moved to their own fields."""
    extra: list[tuple[str, float | str]] = []
    for name, value in point.settings:
        if name in ("replay_capacity", "num_workers", "model_params"):
            if isinstance(value, str):
                raise UsageError(f"--set {name}={value}: {name} is a number")
            if name == "replay_capacity":
                point = replace(point, replay_capacity=int(value))
            elif name == "num_workers":
                point = replace(point, num_workers=int(value))
            else:
                point = replace(point, model_params=int(value))
        elif name == "framework":
            point = replace(point, framework=str(value))
        elif name == "model":
            point = replace(point, model=str(value))
        else:
            extra.append((name, value))
    return replace(point, settings=tuple(extra))


def resolve_point(
    analysis: Analysis, point: PredictPoint
) -> tuple[dict[str, float | str], str, list[str]]:
    """Fill defaults from single-valued factors; check values the models cannot use.

    Every factor the sweep varies needs a value (its flag, or ``--set NAME=VALUE``); a
    factor with one value takes it. A label (categorical factor) must be one the sweep
    measured; a number may be anything ≥ 0 (out of the measured range is a warning)."""
    point = _with_settings(point)
    warnings: list[str] = []
    resolved: dict[str, float | str] = {}
    infos = {f.name: f for f in analysis.models.factors}
    given: dict[str, float | str | None] = {
        "replay_capacity": point.replay_capacity,
        "num_workers": point.num_workers,
        "framework": point.framework,
        **dict(point.settings),
    }
    for name, value in given.items():
        if name not in infos and name not in BUILTIN_FLAGS and value is not None:
            known = ", ".join(f.name for f in analysis.models.factors) or "none"
            raise UsageError(f"--set {name}: not a factor of this sweep (its factors: {known})")
    for factor, info in infos.items():
        if factor == "model_params":
            continue
        flag = BUILTIN_FLAGS.get(factor, f"--set {factor}=VALUE")
        value = given.get(factor)
        measured = list(info.values)
        if value is None:
            if len(measured) == 1:
                resolved[factor] = measured[0]
                continue
            if not measured:
                continue
            raise UsageError(
                f"{flag} is required: the sweep varies {factor} ({', '.join(map(as_written, measured))})"
            )
        numeric = all(isinstance(v, int | float) for v in measured)
        if numeric and isinstance(value, str):
            raise UsageError(f"{flag}: {factor} is a number in this sweep, got {value!r}")
        resolved[factor] = float(value) if numeric and not isinstance(value, str) else value
        if not info.in_model and measured and value not in measured:
            raise UsageError(
                f"{flag.replace('=VALUE', '')} {value}: {info.note}; cannot predict another "
                f"value. Sweep more than one value of {factor}."
            )
        if not numeric and measured and str(value) not in map(str, measured):
            raise UsageError(
                f"{flag.replace('=VALUE', '')} {value}: the sweep measured only "
                f"{', '.join(map(as_written, measured))}"
            )
    if "framework" not in resolved and "framework" in analysis.trial_table:
        frameworks = analysis.trial_table["framework"].dropna().unique()
        if len(frameworks) == 1:
            resolved["framework"] = str(frameworks[0])
    source = "given"
    has_models = "model" in analysis.trial_table and analysis.trial_table["model"].notna().any()
    if point.model_params is not None or has_models:
        params, source, label = _resolve_params(analysis, point, str(resolved.get("framework", "")))
        resolved["model_params"] = params
        resolved["model"] = label
        params_info = infos.get("model_params")
        if params_info is not None and not params_info.in_model:
            measured_params = [float(v) for v in params_info.values]
            if measured_params and not any(
                math.isclose(params, v, rel_tol=1e-6) for v in measured_params
            ):
                raise UsageError(
                    f"--model {label} ({format_number(params)} parameters): {params_info.note}; "
                    "cannot predict another model. Sweep more than one model."
                )
        if source == "estimated":
            warnings.append(
                f"model {label} was not in the sweep: {format_number(params)} parameters "
                "estimated from its layer sizes (pass --model-params to give the count)"
            )
    return resolved, source, warnings


def _level(value: float) -> str:
    """A factor level as the user wrote it: a whole number without a decimal point
    (``250``, not ``250.0``), anything else as :func:`format_number` prints it."""
    return f"{value:,.0f}" if value.is_integer() else format_number(value)


def _unfitted_warnings(
    analysis: Analysis, model: FittedModel, point: dict[str, float | str]
) -> list[str]:
    """A factor the sweep varied that the plateau model left out (too few trials to fit
    it, or confounded): the prediction does not move with it, whatever the point asks."""
    return [
        f"{info.name} is not in the fitted model (the sweep varied it, but {len(info.values)} "
        f"levels over {model.n_trials} trials could not fit it; see the analysis's notes): "
        f"this prediction is the same for any {info.name}; add trials that vary it to fit it"
        for info in analysis.models.factors
        if len(info.values) > 1 and not info.in_model and info.name in point
    ]


def _extrapolation_warnings(model: FittedModel, point: dict[str, float | str]) -> list[str]:
    out = []
    for form in model.formula.forms:
        factor = form.factor
        if factor not in model.ranges or factor not in point:
            continue
        low, high = model.ranges[factor]
        value = float(point[factor])
        if value > high:
            ratio = f" ({value / high:.3g}× the largest)" if high > 0 else ""
            out.append(
                f"extrapolating: {factor} {_level(value)} is above the measured range "
                f"{_level(low)}–{_level(high)}{ratio}"
            )
        elif value < low:
            out.append(
                f"extrapolating: {factor} {_level(value)} is below the measured range "
                f"{_level(low)}–{_level(high)}"
            )
    return out


GROWTH_WARNINGS_SHOWN = 3
"""Trials with sustained growth named one by one in a prediction's warnings (fastest
first); any more are counted in one more line."""


def _same_level(measured: object, asked: float | str) -> bool:
    if isinstance(measured, int | float) and not isinstance(measured, bool):
        return not isinstance(asked, str) and math.isclose(float(measured), float(asked))
    return str(measured) == str(asked)


def _shown(value: object) -> str:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return _value_text(float(value) if number else str(value))  # type: ignore[arg-type]


def _rate(verdict: GrowthVerdict) -> float:
    rate = verdict.rate_mb_per_1m_steps
    return rate.value if rate is not None else 0.0


def _growth_warnings(analysis: Analysis, point: dict[str, float | str]) -> list[str]:
    """One warning per trial the growth verdict flags (sustained growth), fastest first.

    A prediction is of a plateau (and a peak) that such a trial does not have: its memory
    kept rising at the late rate the verdict measured (RSS, MB per 1M env steps), so the
    warning gives that rate and what it adds over the analysis's horizon
    (``--horizon``, env steps), and says whether the trial ran at the predicted point
    (every factor it has at the value asked) or elsewhere in the sweep."""
    by_trial: dict[str, list[GrowthVerdict]] = {}
    for verdict in analysis.flagged:
        if verdict.rate_mb_per_1m_steps is not None and verdict.projected_bytes is not None:
            by_trial.setdefault(verdict.trial_id, []).append(verdict)
    # Per trial its total when that is flagged, else its fastest-growing role.
    chosen = [
        next((v for v in verdicts if v.role == "total"), None) or max(verdicts, key=_rate)
        for verdicts in by_trial.values()
    ]
    ranked = sorted(chosen, key=_rate, reverse=True)
    names = [f.name for f in analysis.models.factors if f.name != "model_params"]
    out = []
    for verdict in ranked[:GROWTH_WARNINGS_SHOWN]:
        rate, projected = verdict.rate_mb_per_1m_steps, verdict.projected_bytes
        assert rate is not None and projected is not None  # filtered above
        trial = analysis.trial(verdict.trial_id).factors
        factors = {k: trial[k] for k in names if k in trial}
        here = all(_same_level(v, point[k]) for k, v in factors.items() if k in point)
        where = ", ".join(f"{k}={_shown(v)}" for k, v in factors.items()) or "no factors"
        role = "in total" if verdict.role == "total" else f"in its {verdict.role}"
        out.append(
            f"trial {verdict.trial_id} ({where}; "
            f"{'this point' if here else 'not this point'}) had sustained growth {role}: "
            f"+{format_number(rate.value)} MB per 1M env steps (CI {format_number(rate.low)}"
            f"–{format_number(rate.high)}), +{format_bytes(projected.value)} over "
            f"{format_number(verdict.horizon_env_steps)} env steps (--horizon); the figures "
            "above are its plateau and peak as measured, not that growth"
            + ("" if here else ", which a run here may share")
        )
    if len(ranked) > GROWTH_WARNINGS_SHOWN:
        out.append(
            f"{len(ranked) - GROWTH_WARNINGS_SHOWN} more trial(s) with sustained growth: "
            "see the report's growth section"
        )
    return out


def _row(frame: pd.DataFrame, i: int, interval: Literal["obs", "mean"] = "obs") -> Estimate:
    """A predicted memory figure, cut at 0 (memory is never negative; cutting both the
    value and its interval's ends keeps the value inside its interval)."""
    return Estimate(
        max(float(frame["mean"].iloc[i]), 0.0),
        max(float(frame[f"{interval}_ci_lower"].iloc[i]), 0.0),
        max(float(frame[f"{interval}_ci_upper"].iloc[i]), 0.0),
    )


def at_least(peak: Estimate | None, plateau: Estimate) -> Estimate | None:
    """A predicted peak is never below its predicted plateau: the peak of max(peak,
    plateau), its interval the ends' maxima (which holds the value)."""
    if peak is None:
        return None
    return Estimate(
        max(peak.value, plateau.value), max(peak.low, plateau.low), max(peak.high, plateau.high)
    )


def predict_roles(models: ModelSet, points: pd.DataFrame) -> list[tuple[RolePrediction, ...]]:
    """Coherent predictions (never negative, peak ≥ plateau) per point of ``points`` (one
    row per point, factor columns): each point's roles with a model, ``total`` last.
    What ``predict`` prints and what the accuracy benchmark measures."""
    names = [r for r in models.roles if models.get(f"plateau[{r}]") is not None]
    frames = {}
    for role in (*names, "total"):
        suffix = "" if role == "total" else f"[{role}]"
        plateau = models.get(f"plateau{suffix}")
        if plateau is None:
            continue
        peak = models.get(f"peak{suffix}")
        frames[role] = (
            _not_below_the_edge(plateau, points),
            _not_below_the_edge(peak, points) if peak else None,
        )
    out = []
    for i in range(len(points)):
        row: list[RolePrediction] = []
        for role, (plateau_frame, peak_frame) in frames.items():
            if _absent(role, points, i):
                row.append(
                    RolePrediction(role, NOTHING, NOTHING if peak_frame is not None else None)
                )
                continue
            level = _row(plateau_frame, i)
            if role == "total" and row:
                level = _at_least_the_sum(level, [r.plateau for r in row])
            top = at_least(_row(peak_frame, i), level) if peak_frame is not None else None
            if role == "total":
                # The total holds each role at its peak (roles peak at different moments,
                # so not their sum): fitted apart, it once came out below the trainable's.
                for other in row:
                    if other.peak is not None:
                        top = at_least(top, other.peak)
            row.append(RolePrediction(role, level, top))
        out.append(tuple(row))
    return out


def _not_below_the_edge(model: FittedModel, points: pd.DataFrame) -> pd.DataFrame:
    """``model.predict(points)``, never below the prediction at the edge of the measured
    range of any factor that lies beyond it: a role whose memory fell over the measured
    range (the trainable hands its sampling to remote env runners) is not carried further
    down by a straight line, which would reach 0 a few env runners later. Each subset of
    the factors out of range is brought to its edge in turn, the others left where they
    are, and the largest prediction kept, so that moving any one factor further out never
    lowers a figure (bringing them all to the edge at once would let a rising factor
    hide a falling one). Taken column by column (mean and each bound), which keeps the
    mean inside its interval."""
    frame = model.predict(points)
    outside = [
        factor
        for factor, (low, high) in model.ranges.items()
        if factor in points
        and pd.api.types.is_numeric_dtype(points[factor])
        and ((points[factor] < low) | (points[factor] > high)).any()
    ]
    for size in range(1, len(outside) + 1):
        for subset in itertools.combinations(outside, size):
            edge = points.copy()
            for factor in subset:
                low, high = model.ranges[factor]
                edge[factor] = edge[factor].clip(low, high)
            at_edge = model.predict(edge)
            frame = frame.where(frame >= at_edge, at_edge)
    return frame


def _at_least_the_sum(total: Estimate, roles: Sequence[Estimate]) -> Estimate:
    """A trial's total plateau is at least the sum of its roles' (its other processes add
    to it); each end of the interval likewise, which keeps the value inside it."""
    return Estimate(
        max(total.value, sum(r.value for r in roles)),
        max(total.low, sum(r.low for r in roles)),
        max(total.high, sum(r.high for r in roles)),
    )


NOTHING = Estimate(0.0, 0.0, 0.0)
"""A role with no process at the point: no memory, exactly."""


def _absent(role: str, points: pd.DataFrame, i: int) -> bool:
    """Whether ``role`` has no process at row ``i``: env runners at ``num_workers`` 0 (the
    trainable samples itself). Its model, fitted on the trials that had the role, would
    otherwise carry their level to a point without it (a sweep of 0 and 2 env runners
    predicted 444 MB of env runners at 0)."""
    if role != "env_runner" or "num_workers" not in points:
        return False
    value = points["num_workers"].iloc[i]
    return bool(pd.notna(value) and float(value) == 0)


def require_models(analysis: Analysis) -> FittedModel:
    plateau_model = analysis.models.get("plateau")
    if plateau_model is None:
        raise DataError(
            "no plateau model could be fitted for this sweep: "
            + ("; ".join(analysis.models.errors) or "no trial reached its plateau")
        )
    return plateau_model


def predict(analysis: Analysis, point: PredictPoint) -> Prediction:
    """Plateau and peak per role and in total, with prediction intervals."""
    plateau_model = require_models(analysis)
    resolved, source, warnings = resolve_point(analysis, point)
    warnings += _unfitted_warnings(analysis, plateau_model, resolved)
    warnings += _extrapolation_warnings(plateau_model, resolved)
    warnings += _growth_warnings(analysis, resolved)
    frame = pd.DataFrame([resolved])
    # One path for predict, the budget solve and the accuracy bench.
    (row,) = predict_roles(analysis.models, frame)
    roles = [r for r in row if r.role != "total"]
    total = row[-1]
    node = analysis.system_bytes_per_node + analysis.driver_bytes
    with_system = RolePrediction(
        NODE_ROW,
        total.plateau.shifted(node),
        total.peak.shifted(node) if total.peak else None,
    )
    return Prediction(
        point=resolved,
        model_params_source=source,
        roles=tuple(roles),
        total=total,
        system_bytes=analysis.system_bytes_per_node,
        total_with_system=with_system,
        warnings=tuple(dict.fromkeys(warnings)),
        confidence=analysis.options.confidence,
        driver_bytes=analysis.driver_bytes,
        sampler_bytes=analysis.sampler_bytes_per_node,
    )


def prediction_text(prediction: Prediction) -> str:
    """The table ``predict`` prints."""
    level = format_level(prediction.confidence)
    p = prediction.point
    shown = []
    for name, value in p.items():
        if name == "model_params":
            continue
        text = _value_text(value)
        if name == "model" and "model_params" in p:
            text += (
                f" ({format_number(float(p['model_params']))} params, "
                f"{prediction.model_params_source})"
            )
        shown.append(f"{name}={text}")
    lines = [
        f"Prediction for {', '.join(shown) or 'the sweep as measured (it has no factor)'}",
        f"{'role':<20} {'plateau':>10}  {level + ' interval':<25} "
        f"{'peak':>10}  {level + ' interval':<25}",
    ]
    for row in (*prediction.roles, prediction.total, prediction.total_with_system):
        peak = row.peak
        lines.append(
            f"{row.role:<20} {format_bytes(row.plateau.value):>10}  "
            f"{_span(row.plateau):<25} "
            f"{format_bytes(peak.value) if peak else 'n/a':>10}  {_span(peak) if peak else '':<25}"
        )
    lines.append(
        f"({NODE_ROW} = total + Ray's own processes (raylet, GCS, idle workers), measured "
        f"{format_bytes(prediction.system_bytes)} per node, + the Tune driver, measured "
        f"{format_bytes(prediction.driver_bytes)} (memsweep's own here; your script's driver "
        "takes its place). Not included: memsweep's samplers, measured "
        f"{format_bytes(prediction.sampler_bytes)} per node, which run only while memsweep "
        "measures)"
    )
    lines += [f"warning: {w}" for w in prediction.warnings]
    return "\n".join(lines)


def _value_text(value: float | str) -> str:
    if isinstance(value, str):
        return value
    return f"{value:,.0f}" if float(value).is_integer() else format_number(float(value))


def _span(estimate: Estimate) -> str:
    return f"{format_bytes(max(estimate.low, 0.0))} – {format_bytes(estimate.high)}"

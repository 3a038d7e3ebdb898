"""PNG plots of a sweep's analysis (matplotlib's Agg canvas, no display, no pyplot state).

Length (~510 lines): four plots that share their labelling, legend and unit helpers;
splitting one plot per module would scatter those helpers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from memsweep.analyze.models import reference_point
from memsweep.units import format_level, format_number, natural_order

if TYPE_CHECKING:
    from memsweep.analyze.analysis import Analysis

GB = 1e9
ROLE_COLOURS = {
    "trainable": "#1f77b4",
    "learner": "#9467bd",
    "replay": "#8c564b",
    "aggregator": "#e377c2",
    "env_runner": "#ff7f0e",
    "child": "#7f7f7f",
}


@dataclass(frozen=True)
class Plot:
    """One written PNG."""

    name: str
    """File name inside the analysis folder."""

    title: str
    caption: str
    """One or two sentences saying how to read it."""

    figure: Figure | None = field(default=None, repr=False, compare=False)
    """The drawn figure, for a caller that reads its axes (tests do)."""


def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    fig.tight_layout()
    fig.savefig(path, dpi=90, bbox_inches="tight")


def _varying(analysis: Analysis) -> list[str]:
    return [f.name for f in analysis.models.factors if len(f.values) > 1]


MAX_DISCRETE_LEVELS = 8
"""A factor with at most this many distinct values gets a legend of its values, not a
colour bar (two levels of num_workers are two colours, never a bar ticked at 0.25)."""

FACTOR_UNITS = {
    "replay_capacity": "transitions",
    "model_params": "parameters",
    "num_workers": "env runners",
    "obs_bytes": "bytes",
    "train_batch_size_per_learner": "env steps",
    "train_batch_size": "env steps",
}
"""Units of the built-in numeric factors and of RLlib settings whose unit is known; any
other factor's axis names the factor and says its unit is the config's own."""


def factor_label(factor: str, values: pd.Series | None = None) -> str:
    """Axis or legend title for a factor, with its unit (``replay_capacity, transitions``);
    a categorical factor (``framework``) is a label, not a quantity, and says so."""
    if factor in FACTOR_UNITS:
        return f"{factor}, {FACTOR_UNITS[factor]}"
    if values is not None and values.dtype.kind not in "fi":
        return f"{factor} (level)"
    return f"{factor} (as configured)"


def _levels(values: pd.Series) -> list[Any]:
    """Distinct values in their natural order (:func:`memsweep.units.natural_order`)."""
    return natural_order(values.dropna().unique().tolist())


def _shown(value: Any) -> str:
    if isinstance(value, int | float | np.integer | np.floating):
        return format_number(float(value))
    return str(value)


@dataclass(frozen=True)
class _Colours:
    """How a factor's values are coloured: a legend of levels or a continuous colour bar."""

    colour: Any
    """value → RGBA."""

    levels: tuple[Any, ...]
    """The levels in legend order; empty for a continuous factor."""

    norm: Normalize | None
    """The colour bar's normaliser; None for a discrete factor."""


def _colour_map(values: pd.Series) -> _Colours:
    """Colours for a factor's trial values: at most ``MAX_DISCRETE_LEVELS`` distinct values
    (or any non-numeric factor) are discrete, ordered numbers on viridis, labels on tab10;
    more numeric values get a colour bar (log-scaled when they span over 20x)."""
    from matplotlib import colormaps

    levels = _levels(values)
    numeric = values.dtype.kind in "fi"
    if numeric and len(levels) > MAX_DISCRETE_LEVELS:
        numbers = values.astype(float)
        positive = numbers[numbers > 0]
        wide = len(positive) == len(numbers) and positive.max() / positive.min() > 20
        norm: Normalize = (
            LogNorm(positive.min(), positive.max())
            if wide
            else Normalize(numbers.min(), numbers.max())
        )
        cmap = colormaps["viridis"]
        return _Colours(lambda v: cmap(norm(float(v))), (), norm)
    if numeric:
        cmap = colormaps["viridis"]
        positions = {float(v): i / max(len(levels) - 1, 1) * 0.85 for i, v in enumerate(levels)}
        return _Colours(lambda v: cmap(positions[float(v)]), tuple(levels), None)
    tab = colormaps["tab10"]
    texts = [str(v) for v in levels]
    return _Colours(lambda v: tab(texts.index(str(v)) % 10), tuple(levels), None)


MAX_LABELLED_TRIALS = 16
"""Up to this many trials every line and dot carries its trial id; beyond it, lines are
labelled where their ends leave room and dots are not (the Trials table lists them all)."""


def trial_labels(trial_ids: list[str]) -> dict[str, str]:
    """Short labels for trials: the part after the run's common Tune prefix
    (``1ab5c_00006`` → ``00006``) when every id shares it, else the whole id."""
    prefixes = {t.rsplit("_", 1)[0] for t in trial_ids if "_" in t}
    if len(prefixes) == 1 and all("_" in t for t in trial_ids):
        return {t: t.rsplit("_", 1)[1] for t in trial_ids}
    return {t: t for t in trial_ids}


def _declutter(ys: list[float], gap: float) -> list[float]:
    """Label heights at least ``gap`` apart, each as near its own line's end as that allows."""
    order = np.argsort(ys)
    placed = list(ys)
    previous = -np.inf
    for i in order:
        placed[i] = max(ys[i], previous + gap)
        previous = placed[i]
    return placed


def _fitted_plateaus(analysis: Analysis) -> dict[str, float]:
    """Each fitted trial's plateau (bytes, the whole trial) as the plateau model predicts it
    from the trial's factor values."""
    model = analysis.models.get("plateau")
    if model is None:
        return {}
    table = analysis.trial_table.loc[list(model.trial_ids)]
    predicted = model.predict(table)["mean"]
    return {str(t): float(v) for t, v in zip(table.index, predicted, strict=True)}


def memory_over_steps(analysis: Analysis, out: Path) -> Plot | None:
    """Total memory against env steps, one labelled line per trial, one panel per varying
    factor; each line marks where its buffer is full (|) and the fitted plateau (dashed)."""
    series = analysis.data.series
    total = series[
        (series["role"] == "total") & series["env_steps"].notna() & series["mem_bytes"].notna()
    ]
    if total.empty:
        return None
    table = analysis.trial_table
    factors = [f for f in _varying(analysis) if f in table] or [
        f for f in ("framework",) if f in table and table[f].notna().any()
    ]
    if not factors:
        factors = ["trial"]
        table = table.assign(trial=table.index.astype(str))
    labels = trial_labels([str(t) for t in total["trial_id"].unique()])
    fitted = _fitted_plateaus(analysis)
    fig = Figure(figsize=(7.5 * min(len(factors), 2), 4.4 * ((len(factors) + 1) // 2)))
    for index, factor in enumerate(factors):
        ax = fig.add_subplot((len(factors) + 1) // 2, min(len(factors), 2), index + 1)
        colours = _colour_map(table[factor].dropna())
        ends: list[tuple[str, float, float, Any]] = []
        for key, rows in total.groupby("trial_id"):
            trial_id = str(key)
            value = table.loc[trial_id, factor] if trial_id in table.index else None
            colour = colours.colour(value) if value is not None and pd.notna(value) else "grey"
            x = rows["env_steps"].to_numpy(dtype=float)
            y = rows["mem_bytes"].to_numpy(dtype=float) / GB
            ax.plot(x, y, lw=1.0, alpha=0.85, color=colour)
            ends.append((trial_id, x[-1], y[-1], colour))
            full = _buffer_full_steps(analysis, trial_id, rows)
            if full is not None:
                ax.plot(full, np.interp(full, x, y), "|", ms=11, mew=1.6, color=colour)
                if trial_id in fitted:
                    ax.hlines(fitted[trial_id] / GB, full, x[-1], colors=colour, ls="--", lw=0.9)
        _label_ends(ax, ends, labels)
        ax.set_xlabel("env steps sampled")
        ax.set_ylabel(f"trial memory, Σ {_metric(analysis)} over its processes, GB")
        ax.set_title(f"coloured by {factor}", fontsize="medium")
        handles = [
            Line2D([], [], ls="", marker="|", ms=11, mew=1.6, color="k", label="buffer full"),
        ]
        if fitted:
            handles.append(Line2D([], [], ls="--", color="k", lw=0.9, label="fitted plateau"))
        if colours.norm is not None:
            from matplotlib import colormaps
            from matplotlib.cm import ScalarMappable

            fig.colorbar(
                ScalarMappable(norm=colours.norm, cmap=colormaps["viridis"]),
                ax=ax,
                label=factor_label(factor, table[factor]),
            )
        else:
            handles += [
                Line2D([], [], color=colours.colour(level), label=_shown(level))
                for level in colours.levels
            ]
        ax.legend(
            handles=handles,
            title=factor_label(factor, table[factor]) if colours.norm is None else None,
            fontsize="x-small",
            title_fontsize="x-small",
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
        )
    name = "memory_over_steps.png"
    _save(fig, out / name)
    return Plot(
        name,
        "Memory over env steps, per trial",
        "Each line is one trial's memory (sum over its processes) against the env steps it "
        "sampled, labelled with its trial id at its end (where ends leave room, past "
        f"{MAX_LABELLED_TRIALS} trials); | marks where its buffer is full "
        "(env steps reached the capacity) and the dashed line is the plateau the fitted "
        "model gives that trial.",
        figure=fig,
    )


def _buffer_full_steps(analysis: Analysis, trial_id: str, rows: pd.DataFrame) -> float | None:
    """Env steps at the trial's plateau start (its buffer full), read off its own series."""
    trial = next((t for t in analysis.trials if t.trial_id == trial_id), None)
    start_s = trial.plateau_start_s if trial is not None else None
    if start_s is None:
        return None
    t_s = rows["t_s"].to_numpy(dtype=float)
    steps = rows["env_steps"].to_numpy(dtype=float)
    return float(np.interp(start_s, t_s, steps))


def _label_ends(ax: Any, ends: list[tuple[str, float, float, Any]], labels: dict[str, str]) -> None:
    """Each trial's label just right of its line's end, nudged apart where lines end close."""
    if not ends:
        return
    low, high = min(e[2] for e in ends), max(e[2] for e in ends)
    gap = max(high - low, 0.05) * 0.055
    if len(ends) > MAX_LABELLED_TRIALS:
        # Too many to nudge apart: label the ends that already stand a gap apart.
        kept: list[tuple[str, float, float, Any]] = []
        for end in sorted(ends, key=lambda e: e[2]):
            if not kept or end[2] - kept[-1][2] >= gap:
                kept.append(end)
        ends = kept
    heights = _declutter([e[2] for e in ends], gap)
    right = max(e[1] for e in ends)
    for (trial_id, x, y, colour), height in zip(ends, heights, strict=True):
        ax.annotate(
            labels.get(trial_id, trial_id),
            xy=(x, y),
            xytext=(right * 1.02, height),
            fontsize="x-small",
            color=colour,
            va="center",
            arrowprops={"arrowstyle": "-", "color": colour, "lw": 0.4, "alpha": 0.6},
        )
    ax.set_xlim(right=right * 1.14)


def _metric(analysis: Analysis) -> str:
    return "PSS" if analysis.data.metric == "pss_bytes" else "RSS"


def peak_vs_factors(analysis: Analysis, out: Path) -> Plot | None:
    """Peak per trial against each factor with the fitted curve and its bands."""
    model = analysis.models.get("peak") or analysis.models.get("plateau")
    if model is None:
        return None
    table = analysis.trial_table.loc[list(model.trial_ids)]
    response = f"{model.name}__total"
    factors = list(model.formula.factors)
    if not factors:
        return None
    ref = reference_point(table, model.formula)
    at_trials = model.predict(table)["mean"]
    labels = trial_labels([str(t) for t in table.index])
    fig = Figure(figsize=(5 * min(len(factors), 2), 4 * ((len(factors) + 1) // 2)))
    for index, factor in enumerate(factors):
        ax = fig.add_subplot((len(factors) + 1) // 2, min(len(factors), 2), index + 1)
        # Partial residuals: each trial moved to the reference values of the other factors,
        # so the points line up with the curve drawn at that reference.
        moved = table.assign(**{k: v for k, v in ref.items() if k != factor and k in table})
        adjusted = table[response] - at_trials + model.predict(moved)["mean"]
        if model.formula.form(factor) is not None:
            grid = np.linspace(table[factor].min(), table[factor].max(), 60)
            points = pd.DataFrame([{**ref, factor: x} for x in grid])
            band = model.predict(points).clip(lower=0.0)
            ax.fill_between(
                grid,
                band["obs_ci_lower"] / GB,
                band["obs_ci_upper"] / GB,
                alpha=0.15,
                color="C0",
                label="prediction interval",
            )
            ax.fill_between(
                grid,
                band["mean_ci_lower"] / GB,
                band["mean_ci_upper"] / GB,
                alpha=0.35,
                color="C0",
                label="fit interval",
            )
            ax.plot(grid, band["mean"] / GB, color="C0", label="fit")
            ax.scatter(
                table[factor], adjusted / GB, s=14, color="k", zorder=3, label="trials (adjusted)"
            )
            _label_points(ax, table[factor].astype(float), adjusted / GB, labels)
            if factor == "replay_capacity" and grid.max() / max(grid.min(), 1) > 20:
                ax.set_xscale("symlog", linthresh=max(grid.min(), 1))
            measured = _levels(table[factor])
            if len(measured) <= MAX_DISCRETE_LEVELS:
                ax.set_xticks([float(v) for v in measured], [_shown(v) for v in measured])
        else:
            levels = model.formula.factor_levels(factor) or ()
            points = pd.DataFrame([{**ref, factor: level} for level in levels])
            band = model.predict(points).clip(lower=0.0)
            x = np.arange(len(levels))
            ax.errorbar(
                x,
                band["mean"] / GB,
                yerr=[
                    (band["mean"] - band["obs_ci_lower"]) / GB,
                    (band["obs_ci_upper"] - band["mean"]) / GB,
                ],
                fmt="o",
                capsize=6,
                label="fit, prediction interval",
            )
            codes = table[factor].astype(str).map({lv: i for i, lv in enumerate(levels)})
            ax.scatter(codes + 0.1, adjusted / GB, s=14, color="k", label="trials (adjusted)")
            _label_points(ax, codes + 0.1, adjusted / GB, labels)
            ax.set_xticks(x, levels)
            ax.set_xlim(-0.5, len(levels) - 0.5)
        ax.set_xlabel(factor_label(factor, table[factor]))
        ax.set_ylabel(
            f"trial's peak (largest Σ {_metric(analysis)} at one moment), GB"
            if model.name == "peak"
            else f"trial's {model.name} (Σ {_metric(analysis)}), GB"
        )
        ax.legend(fontsize="x-small")
    name = "peak_vs_factors.png"
    _save(fig, out / name)
    others = ", ".join(
        f"{k}={format_number(v)}" if isinstance(v, float) else f"{k}={v}" for k, v in ref.items()
    )
    return Plot(
        name,
        f"{model.name.capitalize()} memory against each factor",
        f"Fitted curve with its {format_level(analysis.options.confidence)} fit band (dark) and prediction "
        f"band (light), other factors at the reference point ({others}); dots are trials moved "
        "to that reference by the model (partial residuals), labelled with their trial ids.",
        figure=fig,
    )


def _label_points(ax: Any, x: pd.Series, y: pd.Series, labels: dict[str, str]) -> None:
    """Each trial's short id beside its dot; trials at one x are listed top to bottom in the
    order of their values, so dots that coincide still show every id."""
    if len(x) > MAX_LABELLED_TRIALS:
        return
    frame = pd.DataFrame({"x": x.to_numpy(dtype=float), "y": y.to_numpy(dtype=float)})
    frame.index = [labels.get(str(t), str(t)) for t in x.index]
    for _, group in frame.groupby("x"):
        ordered = group.sort_values("y", ascending=False)
        text = ", ".join(ordered.index)
        ax.annotate(
            text,
            xy=(ordered["x"].iloc[0], ordered["y"].iloc[0]),
            xytext=(4, 3),
            textcoords="offset points",
            fontsize="xx-small",
            color="0.25",
        )


def roles_stacked(analysis: Analysis, out: Path, max_trials: int = 4) -> Plot | None:
    """Per-role memory stacked over time for the trials with the largest peaks."""
    series = analysis.data.series
    roles = series[(series["role"] != "total") & series["mem_bytes"].notna()]
    if roles.empty:
        return None
    peaks = {t.trial_id: t.total.peak_bytes or 0.0 for t in analysis.trials}
    chosen = sorted(peaks, key=lambda k: -peaks[k])[:max_trials]
    fig = Figure(figsize=(6 * min(len(chosen), 2), 3.6 * ((len(chosen) + 1) // 2)))
    for index, trial_id in enumerate(chosen):
        ax = fig.add_subplot((len(chosen) + 1) // 2, min(len(chosen), 2), index + 1)
        rows = roles[roles["trial_id"] == trial_id]
        wide = rows.pivot_table(index="bucket", columns="role", values="mem_bytes").fillna(0.0)
        t_s = rows.groupby("bucket")["t_s"].mean().reindex(wide.index)
        order = [r for r in ROLE_COLOURS if r in wide.columns] + [
            r for r in wide.columns if r not in ROLE_COLOURS
        ]
        ax.stackplot(
            t_s.to_numpy(),
            *(wide[r] / GB for r in order),
            labels=order,
            colors=[ROLE_COLOURS.get(r, "#bbbbbb") for r in order],
            linewidth=0,
        )
        trial = analysis.trial(trial_id)
        if trial.plateau_start_s is not None:
            ax.axvline(trial.plateau_start_s, color="k", ls="--", lw=0.8, label="buffer full")
        ax.set_title(f"{trial_id}: {_factors_title(analysis, trial.factors)}", fontsize="small")
        ax.set_xlabel("seconds since the trial's first sample, s")
        ax.set_ylabel(f"Σ {_metric(analysis)} per role, GB")
        ax.legend(fontsize="x-small", loc="upper left")
    name = "roles_stacked.png"
    _save(fig, out / name)
    return Plot(
        name,
        "Memory per role, stacked",
        f"The {len(chosen)} trials with the largest peaks: memory of each role over time "
        "(sum over the role's processes); the dashed line marks the full buffer.",
        figure=fig,
    )


def _factors_title(analysis: Analysis, factors: dict[str, Any]) -> str:
    """``replay_capacity 10,000, model 64x64, …``: the trial's factor values, skipping
    factors it has no value for (a foreign trainable may have none)."""
    parts = []
    for name in analysis.data.factor_names:
        value = factors.get(name)
        if value is None or (isinstance(value, float) and np.isnan(value)):
            continue
        shown = format_number(value) if isinstance(value, int | float) else str(value)
        parts.append(f"{name} {shown}")
    return ", ".join(parts) or "no factor values recorded"


def drift_rates(analysis: Analysis, out: Path) -> Plot | None:
    """Each trial's late growth rate with its interval; sustained growth in red."""
    rows = [
        v for v in analysis.verdicts if v.role == "total" and v.rate_mb_per_1m_steps is not None
    ]
    if not rows:
        return None
    fig = Figure(figsize=(7, max(2.5, 0.22 * len(rows) + 1)))
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(len(rows))
    for i, v in enumerate(rows):
        assert v.rate_mb_per_1m_steps is not None
        colour = "red" if v.flagged else "C0"
        rate = v.rate_mb_per_1m_steps
        ax.plot([rate.low, rate.high], [i, i], color=colour, lw=2)
        ax.plot(rate.value, i, "o", color=colour, ms=4)
    threshold = analysis.options.growth.min_rate_bytes_per_step
    ax.axvline(0, color="k", lw=0.8)
    ax.axvline(threshold, color="red", lw=0.8, ls="--")
    ax.set_yticks(y, [v.trial_id for v in rows], fontsize="x-small")
    ax.set_ylabel("trial")
    ax.set_xlabel("growth over the last half of the plateau, MB per 1M env steps")
    name = "drift_rates.png"
    _save(fig, out / name)
    return Plot(
        name,
        "Growth after the buffer filled, per trial",
        f"Trial totals (RSS) with {format_level(analysis.options.confidence)} intervals; dashed: the "
        "sustained-growth threshold; red: sustained growth (the whole interval above it).",
        figure=fig,
    )


def write_plots(analysis: Analysis, out: Path) -> tuple[Plot, ...]:
    """Every plot that the data allow, written into ``out``."""
    made = [
        memory_over_steps(analysis, out),
        peak_vs_factors(analysis, out),
        roles_stacked(analysis, out),
        drift_rates(analysis, out),
    ]
    return tuple(p for p in made if p is not None)

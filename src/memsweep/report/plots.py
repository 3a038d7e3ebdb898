"""PNG plots of a sweep's analysis (matplotlib's Agg canvas, no display, no pyplot state)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure

from memsweep.analyze.models import reference_point
from memsweep.units import format_number

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


def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def _varying(analysis: Analysis) -> list[str]:
    return [f.name for f in analysis.models.factors if len(f.values) > 1]


def _colour_map(values: pd.Series) -> tuple[Any, Any]:
    """(value → colour, colour-bar normaliser or None) for a factor's trial values."""
    from matplotlib import colormaps

    if values.dtype.kind in "fi":
        numbers = values.astype(float)
        positive = numbers[numbers > 0]
        wide = len(positive) == len(numbers) and positive.max() / positive.min() > 20
        norm: Normalize = (
            LogNorm(positive.min(), positive.max())
            if wide
            else Normalize(numbers.min(), numbers.max())
        )
        cmap = colormaps["viridis"]
        return (lambda v: cmap(norm(float(v)))), norm
    levels = sorted(values.astype(str).unique())
    tab = colormaps["tab10"]
    return (lambda v: tab(levels.index(str(v)) % 10)), None


def memory_over_steps(analysis: Analysis, out: Path) -> Plot | None:
    """Total memory against env steps, one line per trial, one panel per varying factor."""
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
    fig = Figure(figsize=(6 * min(len(factors), 2), 4 * ((len(factors) + 1) // 2)))
    for index, factor in enumerate(factors):
        ax = fig.add_subplot((len(factors) + 1) // 2, min(len(factors), 2), index + 1)
        colour, norm = _colour_map(table[factor].dropna())
        for trial_id, rows in total.groupby("trial_id"):
            value = table.loc[trial_id, factor] if trial_id in table.index else None
            ax.plot(
                rows["env_steps"],
                rows["mem_bytes"] / GB,
                lw=0.9,
                alpha=0.8,
                color=colour(value) if value is not None and pd.notna(value) else "grey",
            )
        ax.set_xlabel("env steps")
        ax.set_ylabel(f"trial memory ({_metric(analysis)}), GB")
        ax.set_title(f"coloured by {factor}")
        if norm is not None:
            from matplotlib import colormaps
            from matplotlib.cm import ScalarMappable

            fig.colorbar(ScalarMappable(norm=norm, cmap=colormaps["viridis"]), ax=ax, label=factor)
        else:
            levels = sorted(table[factor].dropna().astype(str).unique())
            for level in levels:
                ax.plot([], [], color=colour(level), label=level)
            ax.legend(title=factor, fontsize="small")
    name = "memory_over_steps.png"
    _save(fig, out / name)
    return Plot(
        name,
        "Memory over env steps, per trial",
        "Each line is one trial's memory (sum over its processes) against the env steps it "
        "sampled; the bend is where the replay buffer is full.",
    )


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
            if factor == "replay_capacity" and grid.max() / max(grid.min(), 1) > 20:
                ax.set_xscale("symlog", linthresh=max(grid.min(), 1))
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
            ax.set_xticks(x, levels)
        ax.set_xlabel(factor)
        ax.set_ylabel(f"{model.name} memory, GB")
        ax.legend(fontsize="x-small")
    name = "peak_vs_factors.png"
    _save(fig, out / name)
    others = ", ".join(
        f"{k}={format_number(v)}" if isinstance(v, float) else f"{k}={v}" for k, v in ref.items()
    )
    return Plot(
        name,
        f"{model.name.capitalize()} memory against each factor",
        f"Fitted curve with its {analysis.options.confidence:.0%} fit band (dark) and prediction "
        f"band (light), other factors at the reference point ({others}); dots are trials moved "
        "to that reference by the model (partial residuals).",
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
        ax.set_xlabel("seconds since the trial's first sample")
        ax.set_ylabel("GB")
        ax.legend(fontsize="x-small", loc="upper left")
    name = "roles_stacked.png"
    _save(fig, out / name)
    return Plot(
        name,
        "Memory per role, stacked",
        f"The {len(chosen)} trials with the largest peaks: memory of each role over time "
        "(sum over the role's processes); the dashed line marks the full buffer.",
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
    ax.set_xlabel("growth over the last half of the plateau, MB per 1M env steps")
    name = "drift_rates.png"
    _save(fig, out / name)
    return Plot(
        name,
        "Growth after the buffer filled, per trial",
        f"Trial totals (RSS) with {analysis.options.confidence:.0%} intervals; dashed: the "
        "sustained-growth threshold; red: sustained growth (the whole interval above it).",
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

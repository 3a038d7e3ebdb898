"""Each claim's rows: the sweep that tests it, the figure or direction claimed, and what was
measured (see :mod:`memsweep.claims.verdicts` for the rules)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from memsweep.analyze.formula import Formula
from memsweep.claims.table import (
    ABOUT,
    NEGLIGIBLE,
    ClaimRow,
    ClaimSweep,
    SweepFacts,
)
from memsweep.claims.verdicts import (
    contrast,
    difference_side,
    direction_verdict,
    figure_verdict,
    fit,
    linear,
    reach,
    span_text,
    typical_memory,
)
from memsweep.errors import DataError
from memsweep.units import Estimate, format_bytes, format_number

REPLAY_CLAIM = "Going from a 100k to a 1M replay buffer cost about 8 GB (Atari DQN)"
REPLAY_FIGURE = 8e9
MODEL_CLAIM = "A deep conv net added ~15 GB"
MODEL_FIGURE = 15e9
EAGER_CLAIM = "TF eager uses more RAM than graph mode"
TORCH_CLAIM = "PyTorch may use less memory than TensorFlow"
WORKERS_CLAIM = "Each parallel environment (env runner) adds its own state"
ADDITIVE_CLAIM = "Replay capacity, env runners and framework add up (no interactions)"
SCALE_RUNNERS = 8
"""Env runners the per-process claims are carried to (a typical single-node run)."""

SCALE_WORKERS = 32
"""Env runners the per-runner cost is carried to (a typical cluster run)."""


def replay_rows(sweep: SweepFacts, variant: str) -> list[ClaimRow]:
    """Bytes per stored transition; the 100k → 1M step predicted by the straight line."""
    table = sweep.analysis.trial_table
    model = fit(sweep, Formula(forms=(linear("replay_capacity", table),)))
    per = contrast(model, [{"replay_capacity": 1.0}], [{"replay_capacity": 0.0}])
    step = contrast(model, [{"replay_capacity": 1e6}], [{"replay_capacity": 1e5}])
    verdict, why = figure_verdict(step, REPLAY_FIGURE, "for 100k → 1M")
    return [
        ClaimRow(
            claim=f"{REPLAY_CLAIM}: {variant}",
            sweep=sweep.name,
            measured="bytes per stored transition (slope of plateau on capacity)",
            estimate=per,
            unit="bytes per transition",
            scale="100k → 1M transitions",
            at_scale=step,
            extrapolation=reach(1e6, float(table["replay_capacity"].max()), "capacity"),
            verdict=verdict,
            why=why,
        )
    ]


def replay_summary(rows: Sequence[ClaimRow]) -> ClaimRow | None:
    """The two variants together: "depends on compression" when they disagree."""
    if len(rows) != 2 or any(r.at_scale is None for r in rows):
        return None
    verdicts = {r.verdict for r in rows}
    if len(verdicts) == 1:
        return None
    holds = next(r for r in rows if r.verdict == "supported")
    variant = holds.claim.rsplit(": ", 1)[-1]
    ratio = rows[0].at_scale.value / rows[1].at_scale.value if rows[1].at_scale else math.nan  # type: ignore[union-attr]
    return ClaimRow(
        claim=REPLAY_CLAIM,
        sweep=" + ".join(r.sweep for r in rows),
        measured="both variants above",
        scale="100k → 1M transitions",
        verdict="depends on observation compression",
        why=(
            f"holds {variant} only; uncompressed frames cost {ratio:.2g}× the "
            "compressed ones (RLlib's compress_observations, old API stack)"
        ),
    )


def model_rows(sweep: SweepFacts) -> list[ClaimRow]:
    """Deep vs small net: extra memory in the trainable, extra per env runner, and the
    number of env runners at which the extra reaches the claimed 15 GB."""
    table = sweep.analysis.trial_table
    formula = Formula(
        forms=(linear("model_params", table), linear("num_workers", table)),
        interactions=(("num_workers", "model_params"),),
    )
    model = fit(sweep, formula)
    by_params = table.groupby("model")["model_params"].median().sort_values()
    small, deep = float(by_params.iloc[0]), float(by_params.iloc[-1])
    small_label, deep_label = str(by_params.index[0]), str(by_params.index[-1])

    def point(params: float, workers: float) -> dict[str, float]:
        return {"model_params": params, "num_workers": workers}

    in_trainable = contrast(model, [point(deep, 0)], [point(small, 0)])
    per_runner = contrast(
        model, [point(deep, 1), point(small, 0)], [point(small, 1), point(deep, 0)]
    )
    at_scale = contrast(model, [point(deep, SCALE_RUNNERS)], [point(small, SCALE_RUNNERS)])
    ratio = deep / small if small else math.inf
    rows = [
        ClaimRow(
            claim=f"{MODEL_CLAIM}: in the trainable",
            sweep=sweep.name,
            measured=(
                f"deep ({format_number(deep)} params) − small ({format_number(small)}), "
                f"{ratio:.0f}× the parameters, 0 env runners"
            ),
            estimate=in_trainable,
            unit="bytes",
            scale=f"{SCALE_RUNNERS} env runners",
            at_scale=at_scale,
            extrapolation=reach(
                SCALE_RUNNERS, float(table["num_workers"].max()), "env-runner count"
            ),
            verdict="",
            why="",
        ),
        ClaimRow(
            claim=f"{MODEL_CLAIM}: per env runner",
            sweep=sweep.name,
            measured=f"deep − small, each env runner's extra copy ({deep_label} vs {small_label})",
            estimate=per_runner,
            unit="bytes per env runner",
            verdict="",
            why="",
        ),
    ]
    verdict, why = _model_verdict(in_trainable, per_runner, at_scale)
    return [_with_verdict(row, verdict, why) for row in rows]


def _model_verdict(
    in_trainable: Estimate, per_runner: Estimate, at_scale: Estimate
) -> tuple[str, str]:
    if in_trainable.low * (1 - ABOUT) <= MODEL_FIGURE <= in_trainable.high * (1 + ABOUT):
        return figure_verdict(in_trainable, MODEL_FIGURE, "in the trainable alone")
    if per_runner.value <= 0 or per_runner.low <= 0:
        verdict, why = figure_verdict(at_scale, MODEL_FIGURE, f"at {SCALE_RUNNERS} env runners")
        if per_runner.value > 0:
            runners = (MODEL_FIGURE - in_trainable.value) / per_runner.value
            why += (
                f"; at the point estimates 15 GB would take about {runners:,.0f} env runners "
                "(the per-runner interval includes 0, so no range)"
            )
        return verdict, why
    runners = (MODEL_FIGURE - in_trainable.value) / per_runner.value
    fewest = (MODEL_FIGURE - in_trainable.high) / per_runner.high
    most = (MODEL_FIGURE - in_trainable.low) / per_runner.low
    return "depends on the number of env runners", (
        f"{format_bytes(in_trainable.value)} in the trainable plus "
        f"{format_bytes(per_runner.value)} per env runner reach 15 GB at about "
        f"{runners:,.0f} env runners ({max(fewest, 0):,.0f}–{most:,.0f}); at "
        f"{SCALE_RUNNERS}: {span_text(at_scale)}"
    )


def _with_verdict(row: ClaimRow, verdict: str, why: str) -> ClaimRow:
    from dataclasses import replace

    return replace(row, verdict=verdict, why=why)


def growth_text(sweep: SweepFacts, frameworks: Sequence[str], role: str, runners: bool) -> str:
    """Which of ``frameworks``' ``role`` processes keep growing (sustained growth, the
    analysis' verdict, :mod:`memsweep.analyze.growth`) in the trials with (``runners``) or
    without env runners, at what rate; "" when none does. A level difference between
    such processes depends on when the trials stopped, so the row must say so."""
    table = sweep.analysis.trial_table
    parts = []
    for framework in frameworks:
        workers = table["num_workers"].fillna(0)
        chosen = (table["framework"].astype(str) == framework) & (
            (workers > 0) if runners else (workers == 0)
        )
        ids = {str(t) for t in table.index[chosen]}
        rates = [
            v.rate_mb_per_1m_steps
            for v in sweep.analysis.verdicts
            if v.trial_id in ids and v.role == role and v.flagged and v.rate_mb_per_1m_steps
        ]
        if not rates:
            continue
        low = min(r.value for r in rates)
        high = max(r.value for r in rates)
        rate = f"{low:,.0f}" if math.isclose(low, high) else f"{low:,.0f}–{high:,.0f}"
        who = "env runners (together) grow" if role == "env_runner" else f"{role} grows"
        parts.append(
            f"{framework}'s {who} {rate} MB per 1M env steps "
            f"(sustained growth in {len(rates)} of {len(ids)} trials)"
        )
    if not parts:
        return ""
    return (
        "; ".join(parts) + ": the difference is the level when the trials stopped, and it "
        "rises with the length of the run"
    )


def framework_rows(sweep: SweepFacts) -> list[ClaimRow]:
    """Framework differences per process: in the trainable and per env runner."""
    table = sweep.analysis.trial_table
    frameworks = sorted(set(table["framework"].dropna().astype(str)))
    base = "torch" if "torch" in frameworks else frameworks[0]
    levels = (base, *[f for f in frameworks if f != base])
    formula = Formula(
        forms=(linear("num_workers", table),),
        levels=(("framework", levels),),
        interactions=(("framework", "num_workers"),),
    )
    model = fit(sweep, formula)
    typical = typical_memory(sweep)
    top = float(table["num_workers"].max())
    rows: list[ClaimRow] = []

    def pair(claim: str, more: str, less: str, sign: int) -> None:
        if more not in frameworks or less not in frameworks:
            return

        def at(framework: str, workers: float) -> dict[str, Any]:
            return {"framework": framework, "num_workers": workers}

        trainable = contrast(model, [at(more, 0)], [at(less, 0)])
        runner = contrast(model, [at(more, 1), at(less, 0)], [at(less, 1), at(more, 0)])
        scaled = contrast(model, [at(more, SCALE_RUNNERS)], [at(less, SCALE_RUNNERS)])
        verdict, why = direction_verdict(trainable, sign, typical, f"{more} − {less} per trainable")
        runner_verdict, runner_why = direction_verdict(
            runner, sign, typical, f"{more} − {less} per env runner"
        )
        for where, measured, estimate, unit, (verdict_, why_), grows in (
            (
                "in the trainable",
                f"{more} − {less}, trainable process (0 env runners)",
                trainable,
                "bytes",
                (verdict, why),
                growth_text(sweep, (more, less), "trainable", runners=False),
            ),
            (
                "per env runner",
                f"{more} − {less}, each env runner",
                runner,
                "bytes per env runner",
                (runner_verdict, runner_why),
                growth_text(sweep, (more, less), "env_runner", runners=True),
            ),
        ):
            rows.append(
                ClaimRow(
                    claim=f"{claim}: {where}",
                    sweep=sweep.name,
                    measured=measured,
                    estimate=estimate,
                    unit=unit,
                    scale=f"trainable + {SCALE_RUNNERS} env runners",
                    at_scale=scaled,
                    extrapolation=reach(SCALE_RUNNERS, top, "env-runner count"),
                    verdict=verdict_,
                    why=why_,
                    growth=grows,
                )
            )

    pair(EAGER_CLAIM, "tf2-eager", "tf2", +1)
    pair(TORCH_CLAIM, "torch", "tf2", -1)
    return rows


def workers_rows(sweep: SweepFacts) -> list[ClaimRow]:
    """The cost of one more env runner (slope), carried to 32."""
    table = sweep.analysis.trial_table
    model = fit(sweep, Formula(forms=(linear("num_workers", table),)))
    per = contrast(model, [{"num_workers": 1.0}], [{"num_workers": 0.0}])
    scaled = contrast(model, [{"num_workers": float(SCALE_WORKERS)}], [{"num_workers": 0.0}])
    verdict, why = direction_verdict(per, +1, typical_memory(sweep), "one more env runner")
    return [
        ClaimRow(
            claim=WORKERS_CLAIM,
            sweep=sweep.name,
            measured="memory of one more env runner (slope of plateau on env runners)",
            estimate=per,
            unit="bytes per env runner",
            scale=f"{SCALE_WORKERS} env runners",
            at_scale=scaled,
            extrapolation=reach(
                SCALE_WORKERS, float(table["num_workers"].max()), "env-runner count"
            ),
            verdict=verdict,
            why=why,
        )
    ]


INTERACTION_PAIRS: tuple[tuple[str, str], ...] = (
    ("framework", "num_workers"),
    ("framework", "replay_capacity"),
    ("num_workers", "replay_capacity"),
)


def additive_formula(table: pd.DataFrame) -> Formula:
    """Main effects only: capacity and env runners linear, framework an offset."""
    frameworks = sorted(set(table["framework"].dropna().astype(str)))
    base = "torch" if "torch" in frameworks else frameworks[0]
    return Formula(
        forms=(linear("replay_capacity", table), linear("num_workers", table)),
        levels=(("framework", (base, *[f for f in frameworks if f != base])),),
    )


def interaction_rows(sweep: SweepFacts) -> list[ClaimRow]:
    """Each two-factor interaction as the change of one factor's cost across the other's
    range, with its interval. First each pair alone on top of the additive model; then
    the pairs that showed no clear answer again, next to the interactions found real (an
    interaction left out of the model inflates the residuals, and so every interval)."""
    table = sweep.analysis.trial_table
    additive = additive_formula(table)
    typical = typical_memory(sweep)
    band = NEGLIGIBLE * typical
    lows = {f: float(table[f].min()) for f in ("replay_capacity", "num_workers")}
    highs = {f: float(table[f].max()) for f in ("replay_capacity", "num_workers")}
    ((_, levels),) = additive.levels

    def corner(a: str, b: str, a_high: bool, b_high: bool) -> dict[str, Any]:
        point: dict[str, Any] = {
            "replay_capacity": lows["replay_capacity"],
            "num_workers": lows["num_workers"],
            "framework": levels[0],
        }
        for name, high in ((a, a_high), (b, b_high)):
            if name == "framework":
                point[name] = levels[-1] if high else levels[0]
            else:
                point[name] = highs[name] if high else lows[name]
        return point

    def twist(pair: tuple[str, str], alongside: tuple[tuple[str, str], ...]) -> Estimate:
        # A difference of differences over the measured corners:
        # (a high, b high) − (a low, b high) − [(a high, b low) − (a low, b low)].
        a, b = pair
        model = fit(sweep, Formula(additive.forms, additive.levels, (*alongside, pair)))
        return contrast(
            model,
            [corner(a, b, True, True), corner(a, b, False, False)],
            [corner(a, b, False, True), corner(a, b, True, False)],
        )

    alone = {pair: twist(pair, ()) for pair in INTERACTION_PAIRS}
    real = tuple(p for p, e in alone.items() if difference_side(e, band) in ("above", "below"))
    final = {}
    for pair, estimate in alone.items():
        final[pair] = estimate
        if pair not in real and real:
            with contextlib.suppress(DataError):  # Too few trials for both: keep alone.
                final[pair] = twist(pair, real)
    rows: list[ClaimRow] = []
    for (a, b), estimate in final.items():
        side = difference_side(estimate, band)
        shown = f"{a} × {b}: {format_bytes(estimate.value, signed=True)} ({span_text(estimate)})"
        beside = (
            f" (fitted next to {', '.join(f'{x} × {y}' for x, y in real)})"
            if (estimate is not alone[(a, b)])
            else ""
        )
        verdict, why = {
            "above": ("not supported", f"{shown}: these two factors interact"),
            "below": ("not supported", f"{shown}: these two factors interact"),
            "none": ("supported", f"{shown}{beside}, within ±{NEGLIGIBLE:.0%}: they add up"),
            "unclear": (
                "inconclusive",
                f"{shown}{beside}: no interaction shown at this precision",
            ),
        }[side]
        rows.append(
            ClaimRow(
                claim=f"{ADDITIVE_CLAIM}: {a} × {b}",
                sweep=sweep.name,
                measured=(
                    "interaction over the measured corners "
                    f"({_corner_text(a, levels, lows, highs)} × "
                    f"{_corner_text(b, levels, lows, highs)})"
                ),
                estimate=estimate,
                unit="bytes",
                verdict=verdict,
                why=why,
            )
        )
    return rows


def additive_note(sweep: SweepFacts) -> str:
    """How far the purely additive model misses the measured trials (no interval: a fact)."""
    model = fit(sweep, additive_formula(sweep.analysis.trial_table))
    residuals = np.abs(np.asarray(model.result.resid, dtype=float))
    typical = typical_memory(sweep)
    worst = float(residuals.max())
    return (
        f"{sweep.name}: the additive model (capacity + env runners + framework, no "
        f"interaction) fits the {len(residuals)} trials with R² {model.r2:.4f}; its worst "
        f"miss is {format_bytes(worst)}, {worst / typical:.1%} of a typical trial's "
        f"{format_bytes(typical)}."
    )


def _corner_text(
    factor: str, levels: Sequence[str], lows: Mapping[str, float], highs: Mapping[str, float]
) -> str:
    if factor == "framework":
        return f"{levels[0]}→{levels[-1]}"
    return f"{factor} {format_number(lows[factor])}→{format_number(highs[factor])}"


# --- The study: which sweep answers which claim ---------------------------------------------


CLAIM_SWEEPS: tuple[ClaimSweep, ...] = (
    ClaimSweep(
        "replay_atari",
        lambda s: replay_rows(s, "uncompressed frames"),
        (f"{REPLAY_CLAIM}: uncompressed frames",),
    ),
    ClaimSweep(
        "replay_atari_lz4",
        lambda s: replay_rows(s, "LZ4-compressed frames"),
        (f"{REPLAY_CLAIM}: LZ4-compressed frames",),
    ),
    ClaimSweep("model_conv", model_rows, (MODEL_CLAIM,)),
    ClaimSweep("framework_eager", framework_rows, (EAGER_CLAIM, TORCH_CLAIM)),
    ClaimSweep("workers", workers_rows, (WORKERS_CLAIM,)),
    ClaimSweep("interaction", interaction_rows, (ADDITIVE_CLAIM,), additive_note),
)

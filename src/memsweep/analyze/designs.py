"""How many trials does a design need? Designs compared on a measured full grid.

A full grid costs Π levels trials; memsweep also runs a one-at-a-time design
(``search.design: one_at_a_time``), a half fraction of a two-level factorial
(``design: half_fraction``) and Optuna's quasi-Monte-Carlo sampler (``search.mode:
qmc``). Which is enough? This module answers it on real data: given a sweep that ran
the *full* grid, it picks the trials each design would have run, fits the main-effects
model (each varied factor linear, framework an offset) on those trials only, predicts
every grid trial the design left out, and reports the prediction error (RMSE, bytes
and % of the mean plateau). Random designs (QMC and plain random subsets) are drawn
with many seeds and summarised by their median error.

The QMC points are Optuna's own: the ``QMCSampler`` that ``mode: qmc`` gives Tune's
``OptunaSearch``, asked for points over the same categorical factor levels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.linalg

from memsweep.analyze.formula import FACTORS, factor_arrays
from memsweep.analyze.terms import base_formula
from memsweep.units import format_bytes

PLATEAU = "plateau__total"
SEEDS = 20
"""Seeds per random design (QMC scrambling, random subsets)."""


@dataclass(frozen=True)
class DesignResult:
    """One design's prediction error on the grid trials it did not run."""

    design: str
    trials: int
    """Trials the design runs (median over seeds for random designs)."""

    rmse_bytes: float
    """Held-out RMSE (median over seeds); NaN when the design cannot predict."""

    rel_error: float
    """``rmse_bytes`` ÷ the mean plateau of the grid."""

    fitted_share: float
    """Share of seeds whose trials could fit every factor (1 for fixed designs)."""

    note: str = ""


def varied_factors(table: pd.DataFrame) -> list[str]:
    return [f for f in FACTORS if f in table and table[f].nunique(dropna=True) > 1]


def _levels(table: pd.DataFrame, factor: str) -> list[Any]:
    return sorted(table[factor].dropna().unique().tolist(), key=lambda v: (str(type(v)), v))


def held_out_rmse(table: pd.DataFrame, chosen: Sequence[str]) -> float:
    """Fit main effects on ``chosen`` trials, RMSE of predicting the others (NaN: cannot)."""
    train = table.loc[list(chosen)]
    test = table.drop(index=list(chosen))
    factors = varied_factors(table)
    if len(test) == 0 or any(train[f].nunique() < 2 for f in factors):
        return math.nan
    formula, _ = base_formula(train)
    if set(formula.factors) != set(factors):
        return math.nan  # A factor is confounded with another in this subset.
    exog = np.column_stack(
        list(formula.columns(factor_arrays(train, formula), len(train)).values())
    )
    if np.linalg.matrix_rank(exog) < exog.shape[1]:
        return math.nan
    coef = scipy.linalg.lstsq(exog, train[PLATEAU].to_numpy(dtype=float))[0]
    test_exog = np.column_stack(
        list(formula.columns(factor_arrays(test, formula), len(test)).values())
    )
    error = test_exog @ coef - test[PLATEAU].to_numpy(dtype=float)
    return float(np.sqrt(np.mean(np.square(error))))


def loo_rmse(table: pd.DataFrame) -> float:
    """The full grid has nothing left out: its error is leave-one-out."""
    errors = []
    for trial in table.index:
        rest = [t for t in table.index if t != trial]
        one = held_out_rmse(table.loc[[*rest, trial]], rest)
        if math.isnan(one):
            return math.nan
        errors.append(one)
    return float(np.sqrt(np.mean(np.square(errors))))


def _trial_at(table: pd.DataFrame, point: dict[str, Any]) -> str | None:
    mask = np.ones(len(table), dtype=bool)
    for factor, value in point.items():
        mask &= (table[factor] == value).to_numpy()
    found = table.index[mask]
    return str(found[0]) if len(found) else None


def one_at_a_time(table: pd.DataFrame, base: dict[str, Any]) -> list[str]:
    """The base point and each factor moved alone to each of its other levels."""
    points = [dict(base)]
    for factor in varied_factors(table):
        for level in _levels(table, factor):
            if level != base[factor]:
                points.append({**base, factor: level})
    found = [_trial_at(table, p) for p in points]
    return list(dict.fromkeys(t for t in found if t is not None))


def half_fractions(table: pd.DataFrame) -> list[list[str]]:
    """Both halves of a two-level factorial (generator: the product of all ±1 codes)."""
    factors = varied_factors(table)
    if len(factors) < 3 or any(table[f].nunique() != 2 for f in factors):
        return []
    codes = np.ones(len(table))
    for factor in factors:
        low, _ = _levels(table, factor)
        codes *= np.where(table[factor] == low, -1.0, 1.0)
    return [
        [str(t) for t in table.index[codes > 0]],
        [str(t) for t in table.index[codes < 0]],
    ]


def qmc_points(table: pd.DataFrame, n: int, seed: int) -> list[str]:
    """The grid trials Optuna's QMCSampler proposes first, until ``n`` distinct ones."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    factors = varied_factors(table)
    distributions: dict[str, optuna.distributions.BaseDistribution] = {
        f: optuna.distributions.CategoricalDistribution([_plain(v) for v in _levels(table, f)])
        for f in factors
    }
    sampler = optuna.samplers.QMCSampler(seed=seed, scramble=True, warn_independent_sampling=False)
    study = optuna.create_study(sampler=sampler)
    chosen: list[str] = []
    for _ in range(20 * n):
        trial = study.ask(distributions)
        found = _trial_at(table, {f: trial.params[f] for f in factors})
        study.tell(trial, 0.0)
        if found is not None and found not in chosen:
            chosen.append(found)
        if len(chosen) == n:
            break
    return chosen


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def compare_designs(table: pd.DataFrame, sizes: Sequence[int] | None = None) -> list[DesignResult]:
    """Every design on a full-grid trial table (index trial id, factor columns, plateau),
    at each of ``sizes`` (each once; default: the fitted terms up to the grid's size − 1).
    :class:`ValueError` if the table is not a full grid or a size leaves no point out."""
    table = table.dropna(subset=[PLATEAU])
    factors = varied_factors(table)
    if not factors:
        raise ValueError("no factor varies: nothing to design")
    grid_size = math.prod(table[f].nunique() for f in factors)
    if len(table) < grid_size:
        raise ValueError(
            f"the trials do not cover the full grid ({len(table)} of {grid_size} points "
            "reached their plateau): compare designs on a full-grid sweep"
        )
    mean = float(table[PLATEAU].mean())
    results = [
        DesignResult("full grid (leave-one-out)", len(table), loo_rmse(table), math.nan, 1.0)
    ]
    base = {f: _levels(table, f)[0] for f in factors}
    oat = one_at_a_time(table, base)
    results.append(_fixed("one at a time", table, [oat]))
    halves = half_fractions(table)
    if halves:
        results.append(_fixed("half fraction (2^(k-1))", table, halves))
    terms = 1 + sum(
        1 if pd.api.types.is_numeric_dtype(table[f]) else table[f].nunique() - 1 for f in factors
    )
    too_big = [n for n in sizes or () if n >= len(table)]
    if too_big:
        raise ValueError(
            f"a design of {too_big[0]} trials leaves none of the {len(table)} grid points "
            f"out to test it on: give sizes below {len(table)}"
        )
    for n in dict.fromkeys(sizes) if sizes else range(terms, len(table)):
        qmc = [qmc_points(table, n, seed) for seed in range(SEEDS)]
        rng = np.random.default_rng(0)
        rand = [
            [str(t) for t in rng.choice(table.index.to_numpy(), size=n, replace=False)]
            for _ in range(SEEDS)
        ]
        results.append(_seeded(f"Optuna QMC, {n} trials", table, qmc))
        results.append(_seeded(f"random, {n} trials", table, rand))
    return [
        DesignResult(
            r.design,
            r.trials,
            r.rmse_bytes,
            r.rmse_bytes / mean if mean else math.nan,
            r.fitted_share,
            r.note,
        )
        for r in results
    ]


def _fixed(name: str, table: pd.DataFrame, subsets: list[list[str]]) -> DesignResult:
    errors = [held_out_rmse(table, s) for s in subsets]
    finite = [e for e in errors if math.isfinite(e)]
    note = "" if len(subsets) == 1 else f"mean of its {len(subsets)} variants"
    return DesignResult(
        name,
        len(subsets[0]),
        float(np.mean(finite)) if finite else math.nan,
        math.nan,
        len(finite) / len(errors),
        note,
    )


def _seeded(name: str, table: pd.DataFrame, subsets: list[list[str]]) -> DesignResult:
    errors = [held_out_rmse(table, s) for s in subsets]
    finite = [e for e in errors if math.isfinite(e)]
    return DesignResult(
        name,
        int(np.median([len(s) for s in subsets])),
        float(np.median(finite)) if finite else math.nan,
        math.nan,
        len(finite) / len(errors),
        f"median over {len(subsets)} seeds",
    )


def designs_markdown(name: str, table: pd.DataFrame, results: Sequence[DesignResult]) -> str:
    factors = varied_factors(table)
    levels = " × ".join(f"{f} ({table[f].nunique()})" for f in factors)
    lines = [
        f"### {name}: {levels} = {len(table)} trials",
        "",
        "| design | trials | held-out RMSE | % of mean plateau | could fit | note |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        rel = r.rel_error
        lines.append(
            f"| {r.design} | {r.trials} | {format_bytes(r.rmse_bytes)} | "
            f"{'n/a' if math.isnan(rel) else f'{rel:.1%}'} | {r.fitted_share:.0%} | {r.note} |"
        )
    return "\n".join(lines) + "\n"


def trials_to_reach(results: Sequence[DesignResult], slack: float = 0.10) -> dict[str, int | None]:
    """Per design family, the fewest trials whose error is within ``slack`` of the full
    grid's leave-one-out error (None: no size tried gets there)."""
    full = next((r for r in results if r.design.startswith("full grid")), None)
    if full is None or not math.isfinite(full.rmse_bytes):
        return {}
    target = full.rmse_bytes * (1 + slack)
    answer: dict[str, int | None] = {}
    for r in results:
        family = r.design.split(",")[0]
        if family.startswith("full grid"):
            continue
        reached = math.isfinite(r.rmse_bytes) and r.rmse_bytes <= target
        best = answer.get(family)
        if reached and (best is None or r.trials < best):
            answer[family] = r.trials
        else:
            answer.setdefault(family, None)
    return answer


def designs_report(name: str, table: pd.DataFrame, sizes: Sequence[int] | None = None) -> str:
    """The markdown section for one full-grid sweep: the table and the trials needed."""
    table = table.dropna(subset=[PLATEAU])
    results = compare_designs(table, sizes)
    lines = [designs_markdown(name, table, results)]
    reach = trials_to_reach(results)
    if reach:
        full = next(r for r in results if r.design.startswith("full grid"))
        lines.append(
            f"Trials needed to predict the left-out trials within 10 % of the full grid's "
            f"leave-one-out error ({format_bytes(full.rmse_bytes)}, {full.trials} trials):"
        )
        lines.append("")
        for family, trials in reach.items():
            shown = f"{trials}" if trials is not None else "not reached by any size tried"
            lines.append(f"- {family}: {shown}")
    return "\n".join(lines) + "\n"

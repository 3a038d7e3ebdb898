"""The growth verdict measured like a detector, on real leak-free runs with planted growth.

Corpus: every role's plateau (RSS from the moment its buffer filled) in the committed
real runs — ``results/corpus-2cpu-24gb/*`` (long DQN runs: torch new stack and tf2 old
stack, ~115k env steps of plateau), ``results/claims-2cpu-24gb/*`` and
``results/reference-heldback`` (short plateaus, 2k–40k env steps). Series with real
growth of their own (:data:`memsweep.testing.growth_corpus.KNOWN_GROWTH`: TF eager's
sampling process, tf2 old-stack remote env runners) are the real positives; the rest
are leak-free.

Cases, each a copy of a leak-free series cut to its first ``L`` env steps of plateau:

* a sustained leak of 0.05–2 MB per 1k env steps added: detected = ``sustained growth``;
  env steps until detection = the shortest plateau (5k steps apart) that flags it;
  coverage = the late rate's interval contains the planted rate;
* a one-time step of 10, 50 or 200 MB at 30 %, 60 % or 85 % of the plateau, a settling
  curve ``A (1 − exp(−steps/τ))`` (A 10–200 MB, τ 2k–10k env steps), or nothing:
  a ``sustained growth`` verdict is a false flag.

``run(profile)`` returns the bench table's rows (``make bench``, section ``growth``)::

    python benchmarks/bench_growth.py        # the table alone
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from benchlib import REPO, Profile, Row, Stat, log
from memsweep.analyze.growth import GrowthRule
from memsweep.testing.growth_corpus import CorpusSeries, load_corpus

MB = 1e6
RATES_MB_PER_1K = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
LENGTHS = (10_000, 25_000, 50_000, 100_000)
DETECT_GOAL = 0.95
FALSE_FLAG_GOAL = 0.05
COVERAGE_GOAL = 0.90
GOAL_RATE = 0.25
GOAL_LENGTH = 50_000
SHORT_PLATEAU_STEPS = (0, 20_000, 25_000, 30_000, 35_000, 40_000)
"""Plateau lengths below which a slow rate is "too little plateau" (the sweep that chose
``GrowthRule.min_sustained_env_steps``)."""
CREEP_CEILINGS = (0.5, 1.0, 1.5)
"""MB per 1k env steps: a short plateau's rate above this is sustained at once."""


def folders(smoke: bool) -> list[Any]:
    corpus = sorted(p for p in (REPO / "results" / "corpus-2cpu-24gb").iterdir() if p.is_dir())
    if smoke:
        return corpus
    claims = sorted(
        p
        for p in (REPO / "results" / "claims-2cpu-24gb").iterdir()
        if p.is_dir() and (p / "trials.parquet").exists()
    )
    references = [REPO / "results" / name for name in ("reference-heldback", "reference-loaded")]
    return [*corpus, *claims, *references]


def _windows(series: Sequence[CorpusSeries], length: float) -> list[CorpusSeries]:
    return [s.window(length) for s in series if s.plateau_env_steps >= 0.95 * length]


def _fraction(hits: Sequence[bool]) -> Stat | None:
    return Stat.one(sum(hits) / len(hits)) if hits else None


def _status(value: float | None, goal: float, above: bool) -> str:
    if value is None:
        return "not measured"
    return "met" if (value >= goal if above else value <= goal) else "MISSED"


def _goal_coverage(figures: dict[str, Any]) -> list[bool]:
    """Coverage cases: planted rates ≥ 0.25 MB/1k on plateaus ≥ 50k env steps."""
    return [
        hit
        for key, hits in figures["coverage"].items()
        if float(key.split("@")[0]) >= GOAL_RATE and int(key.split("@")[1]) >= GOAL_LENGTH
        for hit in hits
    ]


def measure(series: Sequence[CorpusSeries], rule: GrowthRule) -> dict[str, Any]:
    """Every figure of the section for one rule (plain numbers, for bench.json)."""
    free = [s for s in series if not s.growing]
    flag: Callable[[CorpusSeries], bool] = lambda s: s.classify(rule).kind == "sustained growth"  # noqa: E731
    out: dict[str, Any] = {"leak_free_series": len(free), "detection": {}, "coverage": {}}
    for length in LENGTHS:
        base = _windows(free, length)
        for rate in RATES_MB_PER_1K:
            planted = rate * MB / 1000
            fits = [b.with_leak(planted).classify(rule) for b in base]
            key = f"{rate:g}@{length}"
            out["detection"][key] = [f.kind == "sustained growth" for f in fits]
            out["coverage"][key] = [
                f.late_rate_bytes_per_step.contains(planted)
                for f in fits
                if f.late_rate_bytes_per_step is not None
            ]
    long = [s for s in free if s.plateau_env_steps >= 95_000]
    until: dict[str, list[float]] = {}
    for rate in RATES_MB_PER_1K:
        if rate < GOAL_RATE:
            continue
        steps = []
        for s in long:
            leaky = s.with_leak(rate * MB / 1000)
            found = next(
                (L for L in range(5_000, 100_001, 5_000) if flag(leaky.window(L))),
                float("nan"),
            )
            steps.append(float(found))
        until[f"{rate:g}"] = steps
    out["env_steps_until_detection"] = until
    untouched = [flag(s) for s in free]
    untouched += [flag(w) for length in (25_000, 50_000) for w in _windows(free, length)]
    out["false_flags_untouched"] = untouched
    out["flagged_untouched"] = sorted({s.name for s in free if flag(s)})
    steps_ff = []
    settling_ff = []
    for length in (25_000, 50_000, 100_000):
        for b in _windows(free, length):
            for height in (10, 50, 200):
                for at in (0.3, 0.6, 0.85):
                    steps_ff.append(flag(b.with_step(height * MB, at * length)))
            for amplitude in (10, 50, 200):
                for tau in (2_000, 5_000, 10_000):
                    settling_ff.append(flag(b.with_settling(amplitude * MB, tau)))
    out["false_flags_steps"] = steps_ff
    out["false_flags_settling"] = settling_ff
    positives = [s for s in series if s.growing]
    out["real_growth"] = {s.name: s.classify(rule).kind for s in positives}
    return out


def run(profile: Profile) -> tuple[list[Row], dict[str, Any]]:
    started = time.perf_counter()
    smoke = profile.name == "smoke"
    series = load_corpus(folders(smoke))
    log(f"growth: {len(series)} corpus series loaded in {time.perf_counter() - started:.0f} s")
    rule = GrowthRule()
    figures = measure(series, rule)
    rows: list[Row] = []
    threshold = rule.min_rate_bytes_per_step * 1000 / MB
    n_free = figures["leak_free_series"]
    for key, hits in figures["detection"].items():
        rate_text, length_text = key.split("@")
        rate, length = float(rate_text), int(length_text)
        judged = rate >= GOAL_RATE and length == GOAL_LENGTH
        value = sum(hits) / len(hits) if hits else None
        rows.append(
            Row(
                key=f"growth.detect.{rate_text}.{length // 1000}k",
                section="growth",
                figure=f"detection of a {rate_text} MB/1k-step leak, {length // 1000}k plateau steps",
                tool="memsweep",
                unit="fraction",
                stat=_fraction(hits),
                goal=f"≥ {DETECT_GOAL:.0%}" if judged else "",
                status=_status(value, DETECT_GOAL, True)
                if judged
                else ("info" if hits else "not measured"),
                note=f"{len(hits)} leak-free series",
            )
        )
    for rate_text, steps in figures["env_steps_until_detection"].items():
        found = [s for s in steps if math.isfinite(s)]
        rows.append(
            Row(
                key=f"growth.until.{rate_text}",
                section="growth",
                figure=f"plateau env steps until a {rate_text} MB/1k-step leak is flagged",
                tool="memsweep",
                unit="steps",
                stat=Stat.of(found),
                status="info" if found else "not measured",
                note=f"{len(found)} of {len(steps)} long series flagged within 100k steps",
            )
        )
    coverage = _goal_coverage(figures)
    value = sum(coverage) / len(coverage) if coverage else None
    rows.append(
        Row(
            key="growth.coverage",
            section="growth",
            figure="late-rate interval contains the planted rate (≥ 0.25 MB/1k, ≥ 50k steps)",
            tool="memsweep",
            unit="fraction",
            stat=_fraction(coverage),
            goal=f"≥ {COVERAGE_GOAL:.0%}",
            status=_status(value, COVERAGE_GOAL, True),
            note="a leak-free run's own creep counts against the interval",
        )
    )
    for name, label in (
        ("untouched", "untouched leak-free plateaus (whole, 25k and 50k steps)"),
        ("steps", "one-time steps of 10–200 MB"),
        ("settling", "settling curves, 10–200 MB, τ 2k–10k env steps"),
    ):
        hits = figures[f"false_flags_{name}"]
        value = sum(hits) / len(hits) if hits else None
        rows.append(
            Row(
                key=f"growth.false_flags.{name}",
                section="growth",
                figure=f"false flags on {label}",
                tool="memsweep",
                unit="fraction",
                stat=_fraction(hits),
                goal=f"≤ {FALSE_FLAG_GOAL:.0%}",
                status=_status(value, FALSE_FLAG_GOAL, False),
                note=f"{len(hits)} cases from {n_free} leak-free series"
                + (
                    "; flagged whole: " + ", ".join(figures["flagged_untouched"])
                    if name == "untouched" and figures["flagged_untouched"]
                    else ""
                ),
            )
        )
    real = figures["real_growth"]
    caught = sum(kind == "sustained growth" for kind in real.values())
    rows.append(
        Row(
            key="growth.real_growth",
            section="growth",
            figure="real growth (TF eager sampling, tf2 remote env runners) flagged",
            tool="memsweep",
            unit="fraction",
            stat=Stat.one(caught / len(real)) if real else None,
            status="info" if real else "not measured",
            note=", ".join(f"{v}" for v in sorted(set(real.values()))),
        )
    )
    details: dict[str, Any] = {
        "rule": {
            "min_mb_per_1k_env_steps": threshold,
            "background_mb_per_1k_env_steps": rule.background_rate_bytes_per_step * 1000 / MB,
            "falling_ratio": rule.falling_ratio,
        },
        "figures": figures,
    }
    if not smoke:
        details["threshold_sweep"] = sweep = {}
        for mb_per_1k in (0.05, 0.075, 0.1):
            for background in (0.1, 0.15):
                other = replace(
                    rule,
                    min_rate_bytes_per_step=mb_per_1k * MB / 1000,
                    background_rate_bytes_per_step=background * MB / 1000,
                )
                f = measure(series, other)
                det = f["detection"][f"{GOAL_RATE:g}@{GOAL_LENGTH}"]
                cov = _goal_coverage(f)
                key = f"{mb_per_1k:g}/{background:g}"
                sweep[key] = {
                    "false_flags_untouched": sum(f["false_flags_untouched"])
                    / len(f["false_flags_untouched"]),
                    "detection_0.25_at_50k": sum(det) / len(det) if det else None,
                    "coverage": sum(cov) / len(cov) if cov else None,
                }
                log(f"growth: threshold/background {key} MB/1k: {sweep[key]}")
                value = sweep[key]
                rows.append(
                    Row(
                        key=f"growth.threshold.{mb_per_1k:g}.{background:g}",
                        section="growth",
                        figure=(
                            f"rule with threshold {mb_per_1k:g}, background {background:g} "
                            "MB/1k: false flags on untouched plateaus"
                        ),
                        tool="memsweep",
                        unit="fraction",
                        stat=Stat.one(value["false_flags_untouched"]),
                        note=(
                            f"detection of 0.25 MB/1k at 50k: {value['detection_0.25_at_50k']:.0%}"
                            f", coverage {value['coverage']:.0%}"
                        ),
                    )
                )
        details["short_plateau_sweep"] = short = {}
        for min_steps in SHORT_PLATEAU_STEPS:
            for ceiling in CREEP_CEILINGS:
                other = replace(
                    rule,
                    min_sustained_env_steps=float(min_steps),
                    creep_ceiling_bytes_per_step=ceiling * MB / 1000,
                )
                f = measure(series, other)
                untouched = f["false_flags_untouched"]
                det = f["detection"][f"{GOAL_RATE:g}@{GOAL_LENGTH}"]
                det25 = f["detection"][f"{GOAL_RATE:g}@25000"]
                real_kinds = f["real_growth"].values()
                key = f"{min_steps // 1000}k/{ceiling:g}"
                short[key] = value = {
                    "false_flags_untouched": sum(untouched) / len(untouched),
                    "detection_0.25_at_50k": sum(det) / len(det) if det else None,
                    "detection_0.25_at_25k": sum(det25) / len(det25) if det25 else None,
                    "real_growth_flagged": sum(k == "sustained growth" for k in real_kinds)
                    / max(len(real_kinds), 1),
                }
                log(f"growth: short plateau {key}: {value}")
                chosen = (
                    min_steps == rule.min_sustained_env_steps
                    and ceiling * MB / 1000 == rule.creep_ceiling_bytes_per_step
                )
                rows.append(
                    Row(
                        key=f"growth.short_plateau.{min_steps // 1000}k.{ceiling:g}",
                        section="growth",
                        figure=(
                            f"sustained needs ≥ {min_steps // 1000}k plateau steps unless the "
                            f"rate is above {ceiling:g} MB/1k: false flags on untouched plateaus"
                            + (" (the rule)" if chosen else "")
                        ),
                        tool="memsweep",
                        unit="fraction",
                        stat=Stat.one(value["false_flags_untouched"]),
                        note=(
                            f"detection of 0.25 MB/1k at 50k: {value['detection_0.25_at_50k']:.0%}"
                            f", at 25k: {value['detection_0.25_at_25k']:.0%}; real growth "
                            f"flagged {value['real_growth_flagged']:.0%}"
                        ),
                    )
                )
    log(f"growth: done in {time.perf_counter() - started:.0f} s")
    return rows, details


if __name__ == "__main__":
    import benchlib

    table, _ = run(benchlib.PROFILES["smoke" if "--smoke" in sys.argv else "default"])
    print(benchlib.render_text(table))

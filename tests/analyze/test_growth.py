"""The growth classifier: synthetic series with known answers, properties, and corpus cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memsweep.analyze.growth import GrowthRule, classify_growth
from memsweep.testing.growth_corpus import CorpusSeries, load_series

MB = 1e6
CORPUS = Path(__file__).resolve().parents[2] / "results" / "corpus-2cpu-24gb"


def _series(
    steps: float = 60_000, n: int = 200, noise_mb: float = 1.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.linspace(0, steps, n)
    y = 800 * MB + rng.normal(0, noise_mb * MB, n)
    return x, y, x / 500.0


def test_a_flat_series_is_no_growth_and_never_prints_a_negative_rate() -> None:
    x, y, t = _series()
    fit = classify_growth(x, y - 0.02 * x, t)  # memory falls slowly
    assert fit.kind == "no growth"
    assert fit.late_rate_bytes_per_step is not None
    assert fit.late_rate_bytes_per_step.contains(fit.late_rate_bytes_per_step.value)


@pytest.mark.parametrize("mb_per_1k", [0.5, 1.0, 2.0])
def test_a_linear_leak_is_sustained_growth_with_its_rate_inside_the_interval(
    mb_per_1k: float,
) -> None:
    x, y, t = _series()
    fit = classify_growth(x, y + mb_per_1k * MB / 1000 * x, t)
    assert fit.kind == "sustained growth"
    assert fit.late_rate_bytes_per_step is not None
    assert fit.late_rate_bytes_per_step.contains(mb_per_1k * MB / 1000)


def test_a_one_time_step_is_bounded_and_placed() -> None:
    x, y, t = _series()
    fit = classify_growth(x, y + 50 * MB * (x >= 40_000), t)
    assert fit.kind == "one-time step"
    assert fit.step_bytes == pytest.approx(50 * MB, rel=0.1)
    assert fit.step_at_env_steps == pytest.approx(40_000, abs=1_000)


def test_a_curve_that_settles_early_is_settling() -> None:
    x, y, t = _series()
    fit = classify_growth(x, y + 40 * MB * (1 - np.exp(-x / 8_000)), t)
    assert fit.kind == "settling"
    assert fit.rise_bytes > 20 * MB  # end minus start, means of the first and last tenth


def test_a_short_plateau_says_how_many_more_env_steps_it_needs() -> None:
    x, y, t = _series(steps=3_000, n=10)
    fit = classify_growth(x, y, t)
    assert fit.kind == "too little plateau"
    assert fit.more_env_steps is not None and fit.more_env_steps >= 1_000


def test_a_rate_at_the_threshold_asks_for_more_plateau() -> None:
    rule = GrowthRule()
    x, y, t = _series(steps=12_000, n=40, noise_mb=3.0)
    fit = classify_growth(x, y + rule.min_rate_bytes_per_step * x, t, rule)
    assert fit.kind == "too little plateau"
    assert fit.more_env_steps is not None and fit.more_env_steps > 0


# Derandomized: the same draws every run. A falling or flat series is flagged by chance at
# a small, measured rate (the next test), so a random search would in time find one; this
# one checks the intervals and the verdict on a fixed, varied set.
@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(
    rate=st.floats(-2.0, 2.0),
    noise=st.floats(0.0, 5.0),
    steps=st.floats(2_000, 200_000),
    n=st.integers(4, 300),
    seed=st.integers(0, 10_000),
)
def test_every_rate_lies_inside_its_interval_and_a_falling_series_is_never_sustained(
    rate: float, noise: float, steps: float, n: int, seed: int
) -> None:
    x, y, t = _series(steps=steps, n=n, noise_mb=noise, seed=seed)
    fit = classify_growth(x, y + rate * MB / 1000 * x, t)
    for estimate in (fit.late_rate_bytes_per_step, fit.early_rate_bytes_per_step):
        if estimate is not None:
            assert estimate.low <= estimate.value <= estimate.high
    if rate <= 0:
        assert fit.kind != "sustained growth"
    if fit.kind == "too little plateau":
        assert fit.more_env_steps is not None and fit.more_env_steps > 0


def test_flat_plateaus_of_the_shortest_length_that_decides_are_flagged_at_most_0_13_percent() -> (
    None
):
    # GIVEN 1,500 flat series of 2,000 env steps (the shortest plateau that may decide),
    # 16-60 buckets, 0.5-5 MB of noise: a known answer, no growth in any
    rng = np.random.default_rng(2026)
    flagged = 0
    for _ in range(1500):
        n, noise = int(rng.integers(16, 61)), rng.uniform(0.5, 5.0)
        x = np.linspace(0, 2_000, n)
        y = 800 * MB + rng.normal(0, noise * MB, n)
        # WHEN each is classified
        flagged += classify_growth(x, y, x / 500.0).kind == "sustained growth"
    # THEN at most 2 read as sustained growth (measured: 1; 6 before the rise had to
    # exceed the series' scatter, when a slope interval above the creep ceiling and a
    # 1 MB rise were enough)
    assert flagged <= 2


# -- corpus cases: real leak-free runs with growth planted into copies -------------------


@pytest.fixture(scope="module")
def torch_trainable() -> CorpusSeries:
    series = load_series(CORPUS / "dqn-torch", roles=["trainable"])
    # The run with 2 env runners: the trainable creeps and settles after its buffer fills.
    return next(s for s in series if "env_runner" in s.roles).window(50_000)


def test_an_untouched_leak_free_run_is_not_flagged(torch_trainable: CorpusSeries) -> None:
    assert not torch_trainable.growing
    assert torch_trainable.classify().kind != "sustained growth"


@pytest.mark.parametrize("mb_per_1k", [0.25, 1.0])
def test_a_leak_planted_into_a_real_run_is_flagged_with_its_rate_inside_the_interval(
    torch_trainable: CorpusSeries, mb_per_1k: float
) -> None:
    planted = mb_per_1k * MB / 1000
    fit = torch_trainable.with_leak(planted).classify()
    base = torch_trainable.classify().late_rate_bytes_per_step
    assert fit.kind == "sustained growth"
    assert fit.late_rate_bytes_per_step is not None and base is not None
    # The real run's own creep adds to the planted rate: the interval contains their sum.
    assert fit.late_rate_bytes_per_step.contains(planted + base.value)


def test_a_step_planted_into_a_real_run_is_never_sustained_growth(
    torch_trainable: CorpusSeries,
) -> None:
    fit = torch_trainable.with_step(50 * MB, 30_000).classify()
    assert fit.kind != "sustained growth"
    assert fit.step_bytes == pytest.approx(50 * MB, rel=0.2)


def test_a_step_planted_into_a_flat_real_run_is_a_one_time_step() -> None:
    series = load_series(CORPUS / "dqn-tf2", roles=["trainable"])
    flat = series[0].window(50_000)
    assert flat.classify().kind == "no growth"
    fit = flat.with_step(50 * MB, 30_000).classify()
    assert fit.kind == "one-time step"
    assert fit.step_at_env_steps == pytest.approx(30_000, abs=3_000)


def test_the_real_tf2_env_runner_growth_stands_out() -> None:
    series = load_series(CORPUS / "dqn-tf2", roles=["env_runner", "trainable"])
    runners = next(s for s in series if s.role == "env_runner")
    assert runners.growing and runners.classify().kind == "sustained growth"
    trainables = [s for s in series if s.role == "trainable"]
    assert trainables and all(s.classify().kind != "sustained growth" for s in trainables)


@pytest.mark.parametrize("mb_per_1k", [0.3, 0.45])
def test_a_slow_rise_on_a_short_plateau_is_too_little_plateau_with_the_steps_it_needs(
    mb_per_1k: float,
) -> None:
    # GIVEN a 20k-step plateau that still rises at the pace of a leak-free run's creep
    rule = GrowthRule()
    x, y, t = _series(steps=20_000, n=60, noise_mb=0.3)
    fit = classify_growth(x, y + mb_per_1k * MB / 1000 * x, t, rule)
    # THEN it is not called sustained: it asks for the plateau the rule needs
    assert fit.kind == "too little plateau"
    assert fit.more_env_steps == pytest.approx(rule.min_sustained_env_steps - fit.plateau_env_steps)
    # AND the same rise over a plateau that long is sustained growth
    x, y, t = _series(steps=rule.min_sustained_env_steps + 5_000, n=90, noise_mb=0.3)
    assert classify_growth(x, y + mb_per_1k * MB / 1000 * x, t, rule).kind == "sustained growth"


def test_a_fast_rise_on_a_short_plateau_is_sustained_growth_at_once() -> None:
    # GIVEN TF eager's pace (tens of MB per 1k env steps) over a 4k-step plateau
    x, y, t = _series(steps=4_000, n=40, noise_mb=1.0)
    fit = classify_growth(x, y + 28 * MB / 1000 * x, t)
    assert fit.kind == "sustained growth"


def test_the_short_plateau_torch_trial_of_the_workers_claim_is_not_a_leak() -> None:
    # GIVEN the committed workers claim's torch trial with an env runner (20k plateau
    # steps, its trainable creeping at ~0.2 MB per 1k env steps as allocators settle)
    folder = CORPUS.parent / "claims-2cpu-24gb" / "workers"
    series = [s for s in load_series(folder) if s.trial_id.endswith("00001")]
    assert series
    # THEN no role of it is called sustained growth
    assert all(s.classify().kind != "sustained growth" for s in series)


@pytest.mark.parametrize("seed", range(5))
def test_memory_given_back_and_partly_regrown_is_not_sustained_growth(seed: int) -> None:
    # The shape of a leak-free torch trial on a loaded machine (default sweep, 512x512x512
    # model): it settles up 10 MB, drops 8 MB two thirds into a 15k-step plateau (the heap
    # trimmed) and creeps back 5 MB. Read with the drop as a level shift, the regrowth was a
    # slope of ~1 MB per 1k env steps: "sustained growth". Net, memory did not grow.
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 15_400, 73)
    y = 705 * MB + np.minimum(x, 7_000) / 7_000 * 10 * MB
    dropped = x >= 10_100
    y = y - 8 * MB * dropped + np.where(dropped, (x - 10_100) / 5_300 * 5 * MB, 0)
    fit = classify_growth(x, y + rng.normal(0, MB, len(x)), x / 75)
    assert fit.kind != "sustained growth"
    assert fit.step_bytes is None

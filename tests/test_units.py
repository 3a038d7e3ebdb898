"""Pure pieces of the analysis: parsing, formatting, trend fits, phase cuts, verdicts, search."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memsweep.analyze.formula import ModelError
from memsweep.analyze.load import bucket_width_s, stored_transitions
from memsweep.analyze.models import fit_quantity
from memsweep.analyze.prediction import estimate_params
from memsweep.analyze.segments import PhaseOptions, segment
from memsweep.analyze.solve import largest_fitting
from memsweep.analyze.trends import fit_trend, hac_maxlags
from memsweep.errors import MemsweepError
from memsweep.units import format_bytes, format_level, parse_count, parse_model, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [("64GB", 64 * 10**9), ("16GiB", 16 * 2**30), ("512MB", 512 * 10**6), ("1000B", 1000)],
)
def test_a_budget_is_read_in_decimal_or_binary_units(text: str, expected: int) -> None:
    assert parse_size(text, "--budget") == expected


@pytest.mark.parametrize("text", ["64XB", "sixty", "-3GB", ""])
def test_a_bad_budget_names_the_flag_and_the_value(text: str) -> None:
    with pytest.raises(MemsweepError, match=r"--budget: Invalid memory size format"):
        parse_size(text, "--budget")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1000000", 10**6),
        ("1_000_000", 10**6),
        ("1e6", 10**6),
        ("1M", 10**6),
        ("250k", 250_000),
        ("8", 8),
    ],
)
def test_a_count_accepts_the_usual_spellings(text: str, expected: int) -> None:
    assert parse_count(text, "--replay-capacity") == expected


@pytest.mark.parametrize("text", ["abc", "1.5", "-1", "1e-3"])
def test_a_bad_count_is_refused_with_the_flag_named(text: str) -> None:
    with pytest.raises(MemsweepError, match="--num-workers"):
        parse_count(text, "--num-workers")


@pytest.mark.parametrize(
    ("text", "label", "hidden"),
    [
        ("512,512", "512x512", (512, 512)),
        ("256x256", "256x256", (256, 256)),
        ("c32k8s4-c64k4s2+512", "c32k8s4-c64k4s2+512", None),
    ],
)
def test_a_model_is_layer_sizes_or_a_label(
    text: str, label: str, hidden: tuple[int, ...] | None
) -> None:
    assert parse_model(text) == (label, hidden)


@given(st.floats(min_value=0, max_value=1e15, allow_nan=False))
def test_formatted_bytes_keep_three_significant_digits(value: float) -> None:
    text = format_bytes(value)
    number, unit = text.split(" ")
    scale = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}[unit]
    assert float(number) * scale == pytest.approx(value, rel=0.01, abs=1)


@given(
    intercept=st.floats(-1e10, 1e10),
    slope=st.floats(-1e9, 1e9),
    n=st.integers(5, 200),
)
def test_a_trend_fit_recovers_a_noise_free_line_exactly(
    intercept: float, slope: float, n: int
) -> None:
    x = np.linspace(0, 3, n)
    fit = fit_trend(intercept + slope * x, {"x": x})
    assert fit is not None
    assert fit.coef("x").value == pytest.approx(slope, rel=1e-6, abs=1e-3)
    assert fit.coef("const").value == pytest.approx(intercept, rel=1e-6, abs=1e-3)


def test_a_trend_interval_covers_the_slope_of_noisy_data_at_about_its_level() -> None:
    # GIVEN 400 noisy lines with a known slope
    rng = np.random.default_rng(7)
    x = np.arange(30.0)
    hits = 0
    for _ in range(400):
        fit = fit_trend(5 + 0.3 * x + rng.normal(0, 1, len(x)), {"x": x})
        assert fit is not None
        hits += fit.coef("x").contains(0.3)
    # THEN the 95 % intervals contain it about 95 % of the time (never far fewer)
    assert hits / 400 >= 0.92


def test_a_constant_regressor_cannot_be_fitted() -> None:
    assert fit_trend(np.arange(10.0), {"x": np.ones(10)}) is None
    assert fit_trend(np.arange(3.0), {"x": np.arange(3.0)}) is None


@given(st.integers(0, 100_000))
def test_hac_lags_grow_slowly_with_the_series(n: int) -> None:
    assert 0 <= hac_maxlags(n) <= hac_maxlags(n + 1) <= 4 * (1 + n / 100) ** (2 / 9) + 1


@given(duration=st.floats(0, 1e6), full=st.floats(0.005, 600), buckets=st.integers(10, 5000))
def test_a_bucket_holds_two_pss_reads_and_a_trial_at_most_max_buckets(
    duration: float, full: float, buckets: int
) -> None:
    width = bucket_width_s(duration, full, buckets)
    assert width >= 2 * full
    assert duration / width <= buckets + 1e-9


@given(
    steps=st.lists(st.floats(0, 1e7), min_size=1, max_size=30).map(sorted),
    capacity=st.floats(0, 1e7),
)
def test_stored_transitions_grow_with_steps_and_never_exceed_capacity(
    steps: list[float], capacity: float
) -> None:
    stored = stored_transitions(np.array(steps), np.full(len(steps), np.nan), capacity)
    assert np.all(stored <= capacity + 1e-9)
    assert np.all(np.diff(stored) >= 0)


def test_reported_replay_size_wins_over_env_steps() -> None:
    stored = stored_transitions(np.array([100.0, 200.0]), np.array([50.0, np.nan]), 1000)
    assert stored.tolist() == [50.0, 200.0]


def test_the_plateau_starts_where_the_buffer_fills_between_two_results() -> None:
    # GIVEN results every second, the buffer of 1000 filling at 100 per second from t=2
    t = np.arange(0.5, 60, 1.0)
    p_t = np.arange(2.0, 60.0)
    p_stored = np.minimum((p_t - 2) * 100, 1000)
    stored = np.interp(t, p_t, p_stored, left=np.nan)
    # WHEN the buckets are cut
    seg = segment(
        t,
        stored,
        bucket_s=1.0,
        capacity=1000,
        progress_t_s=p_t,
        progress_stored=p_stored,
        options=PhaseOptions(),
    )
    # THEN the plateau starts at t=11.8 (the 98% threshold, 980, is reached between 11
    # and 12), fill buckets end before it, plateau buckets start after the settle time
    assert seg.plateau_start_s == pytest.approx(11.8, abs=0.01)
    assert t[seg.fill].max() < 11.8 and t[seg.plateau].min() > 11.8
    assert not (seg.fill & seg.plateau).any()


def test_without_a_buffer_everything_after_the_first_result_is_plateau() -> None:
    t = np.arange(0.5, 30, 1.0)
    p_t = np.arange(3.0, 30.0)
    seg = segment(
        t,
        np.zeros(len(t)),
        bucket_s=1.0,
        capacity=0,
        progress_t_s=p_t,
        progress_stored=np.zeros(len(p_t)),
        options=PhaseOptions(),
    )
    assert seg.plateau_start_s == 3.0 and not seg.fill.any() and seg.plateau.sum() > 20


@given(threshold=st.integers(-10, 10**6), high=st.integers(1, 10**6))
def test_largest_fitting_finds_the_last_value_that_fits(threshold: int, high: int) -> None:
    answer = largest_fitting(lambda n: n <= threshold, 0, high)
    if threshold < 0:
        assert answer is None
    else:
        assert answer == min(threshold, high)


@settings(max_examples=50)
@given(
    d_in=st.integers(1, 5000),
    d_out=st.integers(1, 50),
    nets=st.lists(
        st.lists(st.integers(1, 2048), min_size=1, max_size=4),
        min_size=2,
        max_size=5,
        unique_by=tuple,
    ),
    target=st.lists(st.integers(1, 2048), min_size=1, max_size=4),
)
def test_dense_parameters_are_scaled_exactly_from_two_measured_nets(
    d_in: int, d_out: int, nets: list[list[int]], target: list[int]
) -> None:
    def params(hidden: list[int]) -> int:
        sizes = [d_in, *hidden, d_out]
        return sum((a + 1) * b for a, b in itertools.pairwise(sizes))

    examples = [(tuple(h), float(params(h))) for h in nets]
    rows = np.array([[h[0], h[-1] + 1] for h in nets], dtype=float)
    if np.linalg.matrix_rank(rows) < 2:
        return  # the measured nets do not pin down both widths
    estimate = estimate_params(target, examples)
    assert estimate == pytest.approx(params(target), rel=1e-6)


def _trials(n: int, rng: np.random.Generator) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "replay_capacity": rng.choice([1e4, 3e4, 1e5, 3e5, 1e6], n),
            "model_params": rng.choice([5e4, 3e5, 2e6], n),
            "num_workers": rng.choice([0, 1, 2, 4, 8], n).astype(float),
            "framework": rng.choice(["torch", "tf2"], n),
        },
        index=[f"t{i}" for i in range(n)],
    )


def test_a_power_law_in_capacity_is_chosen_over_linear_by_cross_validation() -> None:
    # GIVEN memory that grows as capacity^0.5 (not the affine buffer law)
    rng = np.random.default_rng(1)
    df = _trials(40, rng)
    df["y"] = (
        1e9 + 2e6 * df["replay_capacity"] ** 0.5 + 2e8 * df["num_workers"] + rng.normal(0, 1e6, 40)
    )
    # WHEN fitted
    model = fit_quantity("plateau", df, "y")
    # THEN the power form wins, with p near 0.5
    form = model.formula.form("replay_capacity")
    assert form is not None and form.kind == "power" and form.power == pytest.approx(0.5, abs=0.11)
    chosen = [c for c in model.form_choices if c.factor == "replay_capacity" and c.chosen]
    assert len(chosen) == 1 and chosen[0].loo_rmse_bytes == min(
        c.loo_rmse_bytes for c in model.form_choices if c.factor == "replay_capacity"
    )


def test_three_levels_are_fitted_as_a_line_not_a_curve_through_them() -> None:
    # GIVEN a new user's PPO batch sweep: one trial at each of three batch sizes, with
    # peaks 877, 925, 958 MB (x^0.3 passed through them and was chosen before)
    df = pd.DataFrame(
        {"train_batch_size_per_learner": [500.0, 2000.0, 4000.0]}, index=["a", "b", "c"]
    )
    df["y"] = [877e6, 925e6, 958e6]
    # WHEN fitted
    model = fit_quantity("peak", df, "y", factors=("train_batch_size_per_learner",))
    # THEN no curve was a candidate and the cost is the line's slope
    assert [c.form for c in model.form_choices] == ["train_batch_size_per_learner"]
    form = model.formula.form("train_batch_size_per_learner")
    assert form is not None and form.kind == "linear"
    slope = np.polyfit(df["train_batch_size_per_learner"], df["y"], 1)[0]
    effect = next(e for e in model.effects if e.name.startswith("bytes_per_unit["))
    assert effect.estimate.value == pytest.approx(slope, rel=1e-6)


@pytest.mark.parametrize("seed", range(6))
def test_the_chosen_form_is_the_stated_rule_applied_to_the_listed_errors(seed: int) -> None:
    # GIVEN sweeps whose capacity cost is linear, square-root or logarithmic
    rng = np.random.default_rng(seed)
    df = _trials(40, rng)
    shape = [lambda x: x, np.sqrt, np.log][seed % 3]
    df["y"] = 1e9 + 1e5 * shape(df["replay_capacity"]) * (1 + seed) + rng.normal(0, 2e6, 40)
    model = fit_quantity("plateau", df, "y")
    rows = [c for c in model.form_choices if c.factor == "replay_capacity"]
    linear = next(c for c in rows if c.form == "replay_capacity")
    chosen = next(c for c in rows if c.chosen)
    best = min(rows, key=lambda c: c.loo_rmse_bytes)
    # THEN linear is kept unless another listed form is more than 5 % better, and then
    # the best listed form is chosen
    if best.loo_rmse_bytes < 0.95 * linear.loo_rmse_bytes:
        assert chosen == best, rows
    else:
        assert chosen == linear, rows


def test_too_few_trials_for_the_terms_fits_the_others_and_says_which_is_missing() -> None:
    # GIVEN 3 trials and 5 terms (intercept, three numeric factors, framework)
    df = _trials(3, np.random.default_rng(2))
    df["y"] = [1.0, 2.0, 3.0]
    # WHEN fitted
    model = fit_quantity("plateau", df, "y")
    # THEN some factors are left out, each named with why, and an interval remains
    assert model.dropped and all(
        "not fitted" in note and "cannot fit" in note for note in model.dropped
    )
    assert model.n_trials - len(model.coefficients) >= 1
    left_out = [note.split(" ", 1)[0] for note in model.dropped]
    assert not set(left_out) & set(model.formula.factors)


def test_a_single_trial_cannot_fit_even_a_mean() -> None:
    df = _trials(1, np.random.default_rng(2))
    df["y"] = [1.0]
    with pytest.raises(ModelError, match="cannot fit even a mean"):
        fit_quantity("plateau", df, "y")


def test_an_exactly_linear_truth_is_recovered_exactly() -> None:
    rng = np.random.default_rng(3)
    df = _trials(30, rng)
    df["y"] = 5e8 + 8000 * df["replay_capacity"] + 3e8 * df["num_workers"] + 20 * df["model_params"]
    model = fit_quantity("plateau", df, "y")
    assert model.coefficient("replay_capacity").estimate.value == pytest.approx(8000, rel=1e-6)
    assert model.coefficient("num_workers").estimate.value == pytest.approx(3e8, rel=1e-6)
    assert not math.isnan(model.loo_rmse_bytes)


@pytest.mark.parametrize(
    ("confidence", "text"),
    [(0.95, "95%"), (0.9, "90%"), (0.999, "99.9%"), (0.9999999, "99.99999%"), (0.5, "50%")],
)
def test_a_confidence_level_is_printed_with_the_digits_it_needs(
    confidence: float, text: str
) -> None:
    # `:.0%` printed 0.999 as "100%"
    assert format_level(confidence) == text

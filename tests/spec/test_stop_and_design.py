"""The stop rule (plateau in env steps, a time cap as guard), the replicated base point,
and the estimate `memsweep validate` prints: pure functions of the spec."""

from __future__ import annotations

import itertools

import pytest

from memsweep import result_keys as keys
from memsweep.errors import SpecError
from memsweep.spec import parse_study
from memsweep.spec.plateau import GUARD_FACTOR, estimate, needed_env_steps, time_cap_s

FACTORS = {
    "replay_capacity": [10000, 2500, 25000],
    "model": ["64,64", "512,512,512"],
    "num_workers": [0, 2],
    "framework": ["torch", "tf2"],
}


def test_a_replicated_base_point_gives_one_at_a_time_its_residual_degrees_of_freedom() -> None:
    # GIVEN one-at-a-time over 4 factors (6 points for 5 terms) with the base run 4 times
    study = parse_study(
        {
            "name": "d",
            "factors": FACTORS,
            "search": {"design": "one_at_a_time", "base_repeats": 4},
        }
    )
    points = study.points()
    # THEN 9 trials (3 replicates of the base point: 9 - 6 = 3 residual degrees of freedom)
    base = [
        p
        for p in points
        if (p.replay_capacity, p.num_workers, p.framework) == (10000, 0, "torch")
        and p.model.label == "64x64"
    ]
    assert len(points) == 9 and len(base) == 4
    # AND each base run has its own repeat number and seed
    assert sorted((p.repeat, p.seed) for p in base) == [(0, 0), (1, 1), (2, 2), (3, 3)]
    # AND the replicates are spread through the run order, not bunched at the start
    positions = [i for i, p in enumerate(points) if p in base]
    assert positions[0] == 0 and positions[-1] > len(points) // 2
    assert all(b - a > 1 for a, b in itertools.pairwise(positions))


def test_any_one_lost_trial_leaves_every_factor_moved_when_lone_points_are_replicated() -> None:
    # GIVEN one-at-a-time with the base and each factor's lone moved point run twice
    study = parse_study(
        {
            "name": "d",
            "factors": FACTORS,
            "search": {"design": "one_at_a_time", "base_repeats": 2, "lone_level_repeats": 2},
        }
    )
    points = study.points()
    key = [(p.replay_capacity, p.model.label, p.num_workers, p.framework) for p in points]
    base = (10000, "64x64", 0, "torch")
    # THEN 10 trials: 2 base, capacity's two other levels once each, the others twice
    assert len(points) == 10 and key.count(base) == 2
    assert key.count((10000, "512x512x512", 0, "torch")) == 2
    # AND whichever trial is lost, every factor is still moved away from the base
    for lost in range(len(key)):
        left = key[:lost] + key[lost + 1 :]
        for index in range(4):
            assert any(k[index] != base[index] for k in left), (lost, index)
    # AND the replicates have their own repeat numbers and seeds
    assert len({(p.repeat, p.seed, k) for p, k in zip(points, key, strict=True)}) == 10


def test_lone_level_repeats_outside_one_at_a_time_is_refused() -> None:
    with pytest.raises(SpecError, match="lone_level_repeats applies to design: one_at_a_time"):
        parse_study({"name": "d", "factors": FACTORS, "search": {"lone_level_repeats": 2}})


def test_base_repeats_outside_one_at_a_time_is_refused() -> None:
    with pytest.raises(SpecError, match="base_repeats applies to design: one_at_a_time"):
        parse_study({"name": "d", "factors": FACTORS, "search": {"base_repeats": 2}})


@pytest.mark.parametrize(
    ("result", "reason"),
    [
        ({keys.PLATEAU_ENV_STEPS: 5000, "time_total_s": 10}, keys.STOP_PLATEAU),
        ({keys.PLATEAU_ENV_STEPS: 4999, "time_total_s": 300}, keys.STOP_TIME_CAP),
        ({keys.PLATEAU_ENV_STEPS: 0, "time_total_s": 299}, None),
    ],
)
def test_the_stop_reason_names_the_limit_the_last_result_reached(
    result: dict[str, float], reason: str | None
) -> None:
    stop = parse_study({"name": "s", "stop": {"plateau_env_steps": 5000, "seconds": 300}}).stop
    assert stop.limits() == {keys.PLATEAU_ENV_STEPS: 5000, "time_total_s": 300}
    assert stop.reason(result) == reason


def test_without_seconds_the_guard_is_derived_from_the_estimate_and_reported() -> None:
    # GIVEN a plateau rule and no stop.seconds
    study = parse_study(
        {"name": "s", "factors": {"replay_capacity": [6000]}, "stop": {"plateau_env_steps": 6000}}
    )
    [point] = study.points()
    found = estimate(study, point)
    # THEN the trial needs capacity + plateau env steps, and its guard is 3x their time
    assert needed_env_steps(study, point) == found.env_steps == 12000
    assert time_cap_s(study, point) == pytest.approx(GUARD_FACTOR * 12000 / found.steps_per_s)
    assert found.warning is None
    # AND the trainable's flag is the stop limit, reported as a time cap
    assert study.stop.limits() == {keys.PLATEAU_ENV_STEPS: 6000, keys.TIME_CAPPED: 1}
    assert study.stop.reason({keys.TIME_CAPPED: 1}) == keys.STOP_TIME_CAP


@pytest.mark.parametrize(
    ("stop", "warning"),
    [
        ({"seconds": 240}, "no plateau"),
        ({"env_steps": 4000}, "no plateau"),
        ({"plateau_env_steps": 5000, "seconds": 1}, "stop.seconds 1 ends it before its plateau"),
        ({"plateau_env_steps": 5000, "env_steps": 6000}, "stop.env_steps 6,000 ends it before"),
        ({"plateau_env_steps": 5000}, None),
        ({"env_steps": 20000}, None),
    ],
)
def test_validate_warns_when_the_stop_rule_cannot_reach_a_plateau(
    stop: dict[str, int], warning: str | None
) -> None:
    study = parse_study(
        {
            "name": "s",
            "algorithm": "SAC",
            "env": "Pendulum-v1",
            "factors": {"replay_capacity": [5000], "num_workers": [0]},
            "stop": stop,
        }
    )
    [point] = study.points()
    found = estimate(study, point)
    assert (found.warning is None) == (warning is None)
    if warning is not None:
        assert found.warning is not None and warning in found.warning


def test_replay_algorithms_train_at_a_low_intensity_by_default() -> None:
    for algorithm, env in (("DQN", "CartPole-v1"), ("SAC", "Pendulum-v1")):
        study = parse_study({"name": "t", "algorithm": algorithm, "env": env})
        assert study.training.training_intensity == 0.25

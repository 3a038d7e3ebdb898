"""A sweep file becomes a validated study, or a message that names key, value and fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memsweep.errors import SpecError
from memsweep.spec import ModelSpec, load_study, parse_study, point_from_config
from memsweep.units import parse_bytes

REPO = Path(__file__).resolve().parents[2]
SWEEPS = sorted((REPO / "sweeps").rglob("*.yaml"))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "x.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", SWEEPS, ids=[str(p.relative_to(REPO)) for p in SWEEPS])
def test_every_shipped_sweep_validates(path: Path) -> None:
    study = load_study(path)
    assert study.points() or study.search.mode != "grid"


def test_default_sweep_varies_all_four_factors_and_both_frameworks() -> None:
    study = load_study(REPO / "sweeps" / "default.yaml")
    points = study.points()
    assert len({p.replay_capacity for p in points}) > 1
    assert len({p.model for p in points}) > 1
    assert len({p.num_workers for p in points}) > 1
    frameworks = {p.framework for p in points}
    assert "torch" in frameworks and any(f.startswith("tf2") for f in frameworks)


def test_full_grid_is_the_product_of_the_levels_times_repeats() -> None:
    study = parse_study(
        {
            "name": "g",
            "factors": {
                "replay_capacity": [1000, 2000],
                "model": [[64], [128, 128]],
                "num_workers": [0, 1, 2],
                "framework": ["torch", "tf2"],
            },
            "repeats": 2,
            "seed": 7,
        }
    )
    points = study.points()
    assert len(points) == 2 * 2 * 3 * 2 * 2
    assert {p.seed for p in points} == {7, 8}


def test_one_at_a_time_design_varies_each_factor_alone_around_the_base() -> None:
    study = parse_study(
        {
            "name": "oat",
            "search": {"design": "one_at_a_time"},
            "factors": {
                "replay_capacity": [1000, 2000, 4000],
                "model": [[64], [256, 256]],
                "num_workers": [0, 2],
                "framework": ["torch", "tf2", "tf2-eager"],
            },
        }
    )
    points = study.points()
    assert len(points) == 1 + 2 + 1 + 1 + 2
    base = points[0]
    for point in points[1:]:
        differing = [
            name
            for name in ("replay_capacity", "model", "num_workers", "framework")
            if getattr(point, name) != getattr(base, name)
        ]
        assert len(differing) == 1


def test_tensorflow_runs_on_the_old_stack_and_torch_on_the_new_unless_asked() -> None:
    study = parse_study({"name": "s", "factors": {"framework": ["torch", "tf2", "tf2-eager"]}})
    stacks = {p.framework: p.api_stack(study) for p in study.points()}
    assert stacks == {"torch": "new", "tf2": "old", "tf2-eager": "old"}
    old = parse_study({"name": "s", "api_stack": "old"})
    assert old.points()[0].api_stack(old) == "old"


@pytest.mark.parametrize("factors", ["", "factors: {num_workers: [0, 1]}\n"])
def test_an_algorithm_without_a_buffer_studies_capacity_0_unless_told_otherwise(
    tmp_path: Path, factors: str
) -> None:
    # GIVEN PPO with no replay_capacity in the file (a new user was told to "set
    # replay_capacity: [0]" as if they had set something else)
    study = load_study(write(tmp_path, f"name: x\nalgorithm: PPO\n{factors}"))
    # THEN the capacity is 0, the only one PPO has
    assert study.factors.replay_capacity == (0,)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: x\nfactor: {}\n", "unknown key 'factor'. Did you mean 'factors'?"),
        (
            "name: x\nfactors: {num_workers: [-1]}\n",
            "factors.num_workers[0]: Input should be greater than or equal to 0, got -1",
        ),
        (
            "name: x\nfactors: {framework: [pytorch]}\n",
            "factors.framework[0]: Input should be 'torch', 'tf2' or 'tf2-eager', got 'pytorch'",
        ),
        (
            "name: x\nfactors: {replay_capacity: [100, 100]}\n",
            "replay_capacity lists a value twice",
        ),
        (
            "name: x\nstop: {}\n",
            "stop: set at least one of plateau_env_steps, iterations, env_steps, seconds",
        ),
        (
            "name: x\nalgorithm: PPO\nfactors: {replay_capacity: [1000]}\n",
            "algorithm PPO has no replay buffer",
        ),
        ("name: x\nenv: {id: memsweep/Synthetic-v0}\n", "needs obs_shape"),
        ("name: x\nenv: ALE/Pong-v5\n", "give factors.model a conv stack"),
        ("factors: {}\n", "name is required"),
        ("name: 'bad name/..'\n", "name: String should match pattern"),
        ("- just\n- a list\n", "a sweep file is a YAML mapping"),
        ("name: x\n  bad: indent\n", "not valid YAML"),
        ("name: !!python/object/apply:os.system [echo hi]\n", "not valid YAML"),
        (
            "name: x\nsampling: {interval_s: 0}\n",
            "sampling.interval_s: Input should be greater than or equal to 0.005, got 0",
        ),
        ("name: x\nfactors: {model: ['64,abc']}\n", "a model string lists layer sizes"),
    ],
)
def test_a_bad_sweep_file_is_refused_with_the_key_the_value_and_the_fix(
    tmp_path: Path, text: str, expected: str
) -> None:
    # GIVEN a sweep file with one mistake
    path = write(tmp_path, text)
    # WHEN it is loaded
    with pytest.raises(SpecError) as caught:
        load_study(path)
    # THEN the message names the file and the problem
    message = str(caught.value)
    assert str(path) in message
    assert expected in message


def test_validate_prints_the_expanded_trial_list_and_bad_files_exit_non_zero(
    tmp_path: Path,
) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "memsweep", "validate", str(REPO / "sweeps" / "default.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert "trials:" in ok.stdout and "torch" in ok.stdout
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "memsweep",
            "validate",
            str(write(tmp_path, "name: x\nfactors: {num_workers: [-1]}\n")),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr
    assert "num_workers" in bad.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "memsweep", "validate", str(tmp_path / "nope.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode == 2 and "No such sweep file" in missing.stderr


def test_a_searchers_flat_config_maps_back_to_the_same_point() -> None:
    study = parse_study({"name": "s", "factors": {"model": [[64, 64], "256,256"]}})
    point = point_from_config(
        study,
        {"replay_capacity": 50000, "model": "256x256", "num_workers": 1, "framework": "torch"},
    )
    assert point.model == ModelSpec(hidden=(256, 256))


@given(
    st.integers(min_value=0, max_value=10**6),
    st.sampled_from(["B", "KB", "MB", "GB", "KiB", "MiB", "GiB"]),
)
def test_sizes_parse_with_decimal_and_binary_units(number: int, unit: str) -> None:
    factor = {
        "B": 1,
        "KB": 10**3,
        "MB": 10**6,
        "GB": 10**9,
        "KiB": 2**10,
        "MiB": 2**20,
        "GiB": 2**30,
    }[unit]
    assert parse_bytes(f"{number}{unit}") == number * factor


@pytest.mark.parametrize("bad", ["64XB", "-1GB", "lots", ""])
def test_bad_sizes_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="expected a size"):
        parse_bytes(bad)


def test_numbers_in_e_notation_without_a_dot_are_numbers(tmp_path: Path) -> None:
    # GIVEN a sweep file written as RL configs are (PyYAML, YAML 1.1, read 5e-5 and 1e4 as
    # strings: "lr is a number, got '5e-5'"), and a quoted one that stays a string
    path = tmp_path / "e.yaml"
    (tmp_path / "envs.py").write_text("class Corridor: ...\n")
    path.write_text(
        "name: e\nalgorithm: PPO\nfactors: {replay_capacity: [0], model: ['64,64'],"
        " num_workers: [0], train_batch_size_per_learner: [1e3, 2E+3]}\n"
        "rllib: {lr: 5e-5, minibatch_size: 1.25e2}\n"
        "env: {id: envs.py:Corridor, env_config: {tag: '1e4'}}\n"
        "stop: {plateau_env_steps: 1e4}\n"
    )
    # WHEN it is loaded
    study = load_study(path)
    # THEN each is the number it reads as
    assert study.rllib == {"lr": 5e-5, "minibatch_size": 125.0}
    assert study.factors.rllib == {"train_batch_size_per_learner": (1000, 2000)}
    assert study.stop.plateau_env_steps == 10_000
    assert study.env.env_config == {"tag": "1e4"}

"""Validation that catches, before Ray starts, what would fail later: duplicate keys,
sizes without a unit. Each case asserts the exact line the user sees."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memsweep.errors import SpecError
from memsweep.spec import EnvSpec, load_study, parse_study
from memsweep.spec.runtime import Machine, check_env_id, check_same_sweep, runtime_findings
from memsweep.units import parse_bytes


def validate(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    return subprocess.run(
        [sys.executable, "-m", "memsweep", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )


def test_a_key_given_twice_in_one_mapping_is_refused_naming_the_key_and_both_lines(
    tmp_path: Path,
) -> None:
    # GIVEN a sweep whose second `factors:` would silently replace the first
    result = validate(
        tmp_path,
        "name: dup\nfactors:\n  replay_capacity: [1000]\nfactors:\n  replay_capacity: [2000]\n",
    )
    # THEN validate refuses it in one line with exit 2
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"memsweep: {tmp_path / 'sweep.yaml'}: line 4, column 1: not valid YAML: "
        "duplicate key 'factors' (first on line 2): keep one of them"
    )


def test_a_duplicate_key_inside_a_flow_mapping_on_one_line_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("name: d\nresources: {memory_budget: 1GB, memory_budget: 2GB}\n")
    with pytest.raises(SpecError, match=r"duplicate key 'memory_budget' \(first on line 2\)"):
        load_study(path)


def test_a_merge_key_is_not_a_duplicate(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: m\nbase: &b {replay_capacity: [1000]}\n"
        "factors:\n  <<: *b\n  num_workers: [0]\n".replace("base: &b", "x-base: &b")
    )
    with pytest.raises(SpecError) as caught:
        load_study(path)
    assert "duplicate" not in str(caught.value)  # the unknown key, not a duplicate


def test_a_memory_budget_without_a_unit_is_refused_with_the_likely_meaning(
    tmp_path: Path,
) -> None:
    result = validate(tmp_path, "name: b\nresources: {memory_budget: 64}\n")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"memsweep: {tmp_path / 'sweep.yaml'}: resources.memory_budget: a size needs a unit, "
        "got '64': did you mean 64GB? (write bytes as 64B)."
    )


def test_the_predict_budget_flag_without_a_unit_is_refused(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "memsweep", "analyze", "predict", str(tmp_path), "--budget", "64"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "memsweep analyze: --budget: Invalid memory size format: '64' "
        "(a size needs a unit: did you mean 64GB?)"
    )


@given(st.one_of(st.integers(0, 10**12), st.floats(0, 1e12, allow_nan=False)))
def test_no_bare_number_is_read_as_bytes(number: float) -> None:
    for value in (number, str(number)):
        with pytest.raises(ValueError, match="a size needs a unit"):
            parse_bytes(value)


def test_a_dumped_study_with_sizes_validates_again() -> None:
    study = parse_study({"name": "s", "resources": {"memory_budget": "1.5GiB"}})
    again = parse_study(study.model_dump(mode="json"))
    assert again.resources.memory_budget == study.resources.memory_budget == int(1.5 * 2**30)


# -- the runtime: env ids, CPUs, memory ------------------------------------------------

TWO_CORES = Machine(
    cpus=2, memory_bytes=24 * 10**9, available_bytes=20 * 10**9, where="this machine"
)


def messages(data: dict[str, object], machine: Machine = TWO_CORES) -> list[tuple[str, str]]:
    return [(f.level, f.message) for f in runtime_findings(parse_study(data), machine)]


def test_an_env_id_with_a_typo_is_refused_with_the_nearest_names(tmp_path: Path) -> None:
    result = validate(tmp_path, "name: typo\nenv: CartPol-v1\n")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"memsweep: {tmp_path / 'sweep.yaml'}: env.id: 'CartPol-v1' is not a registered "
        "gymnasium env: did you mean CartPole-v1, CartPole-v0, phys2d/CartPole-v1?"
    )


@pytest.mark.parametrize("env_id", ["CartPole-v1", "ALE/Pong-v5", "Pendulum-v1"])
def test_registered_env_ids_pass_ale_ones_after_ale_py_registers_them(env_id: str) -> None:
    assert check_env_id(EnvSpec(id=env_id)) is None


def test_memsweeps_own_synthetic_env_passes() -> None:
    assert check_env_id(EnvSpec(id="memsweep/Synthetic-v0", obs_shape=(8,))) is None


def test_64_env_runners_on_two_cores_are_refused_for_cpus_at_the_default_share() -> None:
    found = messages({"name": "w", "factors": {"num_workers": [64]}})
    assert [level for level, _ in found] == ["error", "error"]  # CPUs, then memory
    assert found[:1] == [
        (
            "error",
            "resources: a trial with 64 env runners asks for 7.4 CPUs (cpus_per_trainable 1 + "
            "64 × cpus_per_env_runner 0.1) but this machine has 2: Ray would never place it; "
            "lower cpus_per_env_runner or num_workers",
        )
    ]


def test_64_env_runners_placed_by_fractional_cpus_are_refused_for_memory() -> None:
    found = messages(
        {
            "name": "w",
            "factors": {"num_workers": [64]},
            "resources": {"cpus_per_env_runner": 0.01},
        }
    )
    assert found == [
        (
            "error",
            "memory: the largest trial needs at least 25.8 GB (driver 890 MB + trainable 470 MB "
            "+ 64 env runners × 382 MB) but this machine has 24.0 GB: lower factors.num_workers "
            "or factors.replay_capacity",
        )
    ]


def test_a_40_gb_observation_is_refused() -> None:
    found = messages({"name": "o", "env": {"id": "memsweep/Synthetic-v0", "obs_shape": [10**10]}})
    assert found == [
        (
            "error",
            "env: one observation is 40.0 GB, more than this machine's 24.0 GB: "
            "shrink env.obs_shape",
        )
    ]


def test_a_buffer_that_may_not_fit_what_is_free_is_a_warning_with_its_bytes() -> None:
    found = messages(
        {
            "name": "b",
            "env": {"id": "memsweep/Synthetic-v0", "obs_shape": [100_000]},
            "factors": {"replay_capacity": [50_000], "num_workers": [0]},
        }
    )
    assert found == [
        (
            "warning",
            "memory: the largest trial needs at least 21.4 GB (driver 890 MB + trainable "
            "470 MB + 0 env runners × 382 MB + a 50,000-transition buffer of 20.0 GB); "
            "this machine has 20.0 GB available now: it may be OOM-killed",
        )
    ]


def test_validate_refuses_a_40_gb_observation_on_this_machine(tmp_path: Path) -> None:
    result = validate(
        tmp_path, "name: o\nenv: {id: memsweep/Synthetic-v0, obs_shape: [10000000000]}\n"
    )
    assert result.returncode == 2
    line = result.stderr.strip()
    assert line.startswith(
        f"memsweep: {tmp_path / 'sweep.yaml'}: env: one observation is 40.0 GB, more than "
        "this machine's "
    )
    assert line.endswith(": shrink env.obs_shape")


def test_run_into_a_folder_holding_another_sweep_is_refused_before_ray_starts(
    tmp_path: Path,
) -> None:
    # GIVEN a results folder written by another sweep
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "study.yaml").write_text("name: other\nalgorithm: DQN\n")
    sweep = tmp_path / "mine.yaml"
    sweep.write_text("name: mine\n")
    # WHEN this sweep is run into it without --resume
    result = subprocess.run(
        [sys.executable, "-m", "memsweep", "run", str(sweep), "--storage", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    # THEN one line says so and how to go on, and nothing was written or started
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"memsweep: {folder} holds another sweep (its study.yaml differs at name): give "
        "--resume to continue that one, or a new name: or --storage for this one"
    )
    assert sorted(p.name for p in folder.iterdir()) == ["study.yaml"]


def test_the_same_sweep_dumped_is_not_another_sweep() -> None:
    study = parse_study({"name": "s", "resources": {"memory_budget": "2GB"}})
    import yaml

    check_same_sweep(study, yaml.safe_dump(study.model_dump(mode="json")), "results/s")
    with pytest.raises(SpecError, match=r"differs at resources\.memory_budget"):
        other = parse_study({"name": "s", "resources": {"memory_budget": "3GB"}})
        check_same_sweep(other, yaml.safe_dump(study.model_dump(mode="json")), "results/s")

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
from memsweep.spec import load_study, parse_study
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

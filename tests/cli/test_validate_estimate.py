"""``memsweep validate``'s time estimate against a committed run of the same study, and
its refusal of a sweep file without ``stop:``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from memsweep.cli.main import main
from memsweep.spec import load_study
from memsweep.spec.plateau import ESTIMATE_TOLERANCE, sweep_seconds

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "results" / "reference-default"


def reference_seconds() -> float:
    """The committed default run's wall time: from the driver's start (``versions.json``'s
    ``created``, written before Ray starts) to the last trial's end."""
    from datetime import datetime

    created = datetime.fromisoformat(
        json.loads((REFERENCE / "versions.json").read_text())["created"]
    )
    ended = pc.max(pq.read_table(REFERENCE / "trials.parquet")["ended_at"]).as_py()
    return (ended - created).total_seconds()


def test_the_estimate_of_the_default_study_is_within_its_tolerance_of_the_reference_run() -> None:
    # GIVEN the study of the committed default run (nearly idle machine) and its duration
    study = load_study(REFERENCE / "study.yaml")
    actual_s = reference_seconds()
    # WHEN validate's estimate is computed for it
    estimated_s = sweep_seconds(study)
    # THEN it is within the stated tolerance of what the run took
    assert abs(estimated_s - actual_s) <= ESTIMATE_TOLERANCE * actual_s, (estimated_s, actual_s)


def test_validate_prints_that_estimate_for_the_default_sweep(
    capsys: pytest.CaptureFixture[str],
) -> None:
    sweep = REPO / "sweeps" / "default.yaml"
    assert main(["validate", str(sweep)]) == 0
    out = capsys.readouterr().out
    found = re.search(r"about ([\d.]+) min of sweep on a nearly idle 2-core machine", out)
    assert found is not None, out
    assert float(found.group(1)) == pytest.approx(sweep_seconds(load_study(sweep)) / 60, abs=0.05)


def test_a_sweep_file_without_stop_is_refused_by_validate_and_run_with_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the default sweep with its stop rule removed
    text = (REPO / "sweeps" / "default.yaml").read_text()
    sweep = tmp_path / "nostop.yaml"
    sweep.write_text(re.sub(r"(?m)^stop:\n(  .*\n)+", "", text))
    assert "stop" not in load_study(sweep).model_fields_set
    for command in ("validate", "run"):
        capsys.readouterr()
        # WHEN it is validated or run
        code = main(
            [command, str(sweep), *(["--storage", str(tmp_path / "r")] * (command == "run"))]
        )
        # THEN one line naming the fix, exit 2, and nothing written
        assert code == 2
        assert capsys.readouterr().err.strip() == (
            f"memsweep: {sweep}: no `stop:`: add `stop: {{plateau_env_steps: 15000}}` (each "
            "trial runs until its replay buffer is full, then 15,000 env steps: the plateau "
            "the analysis measures; `memsweep validate` estimates the minutes). memsweep does "
            "not default to a fixed count: 10 iterations end a trial wherever its buffer is, "
            "often before it fills, which leaves nothing to fit"
        )
    assert not (tmp_path / "r").exists()

"""Per-role memory in every Tune result, so trackers show memory against hyperparameters:
a plain function trainable holding a known number of bytes, run by a plain Tuner with
memsweep's callback, reports ``memory/<role>/current_bytes`` and ``peak_bytes`` (the
difference between the trials is the difference they hold), Tune's own TensorBoard
logger writes them into its HParams summary next to the trial's hyperparameter, and
Ray's ``MLflowLoggerCallback`` logs them as MLflow metrics of each trial's run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from memsweep import result_keys as keys

SCRIPT = Path(__file__).parent / "scripts" / "tracked_tuner.py"
MiB = 2**20


@pytest.mark.slow
def test_per_role_memory_reaches_tune_results_and_tensorboard_hparams(tmp_path: Path) -> None:
    # GIVEN a plain Tuner of a function holding 64 MiB or 320 MiB, memsweep's callback added
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    run = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env=env,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    lines = [line.split(" ", 3) for line in run.stdout.splitlines() if line.startswith("ROLEKEYS")]
    by_hold = {int(hold): (json.loads(memory), path) for _, hold, memory, path in lines}
    assert sorted(by_hold) == [64 * MiB, 320 * MiB]
    # THEN each trial's last result has the trainable's and the total's keys, current ≤ peak
    for memory, _ in by_hold.values():
        for role in ("trainable", "total"):
            current, peak = (memory[key] for key in keys.role_keys(role))
            assert 0 < current <= peak, memory
        assert memory["memory/total/peak_bytes"] >= memory["memory/trainable/peak_bytes"]
        # and the trial-level keys memsweep's own trainable reports (README: every result)
        assert memory["memory/pss_bytes"] == memory["memory/total/current_bytes"], memory
        assert memory["memory/pss_mb"] == round(memory["memory/pss_bytes"] / 10**6)
        assert (
            memory["memory/pss_bytes"] <= memory["memory/peak_bytes"] <= memory["memory/hwm_bytes"]
        )
    # AND the trainable's peak differs between the trials by what they hold (known answer)
    small, large = (by_hold[h][0]["memory/trainable/peak_bytes"] for h in sorted(by_hold))
    assert large - small == pytest.approx(256 * MiB, rel=0.15)
    # AND Tune's TensorBoard logger put them in its HParams summary with hold_bytes
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    _, path = by_hold[320 * MiB]
    accumulator = EventAccumulator(path, size_guidance={"tensors": 0})
    accumulator.Reload()
    content = accumulator.PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    metrics = {m.name.tag for m in experiment.experiment.metric_infos}
    hparams = {h.name for h in experiment.experiment.hparam_infos}
    assert "hold_bytes" in hparams
    assert {"ray/tune/memory/trainable/peak_bytes", "ray/tune/memory/total/peak_bytes"} <= metrics
    # AND Ray's MLflow logger made one run per trial, its hold_bytes a param and the keys
    # metrics whose last value is the last result's
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    found = client.get_experiment_by_name("tracked")
    runs = client.search_runs([found.experiment_id])
    assert sorted(int(r.data.params["hold_bytes"]) for r in runs) == sorted(by_hold)
    for run in runs:
        memory, _ = by_hold[int(run.data.params["hold_bytes"])]
        for key in ("memory/trainable/peak_bytes", "memory/total/peak_bytes"):
            assert run.data.metrics[key] == memory[key]
    # AND memsweep's own export of the sweep's Parquet (no env steps in a plain function:
    # steps are seconds) shows the 256 MiB between the trials' trainables
    from memsweep.testing.raycluster import memsweep

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = memsweep(
        "export-mlflow", tmp_path / "results", "--tracking-uri", uri, "--experiment", "exported",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    exported = client.search_runs([client.get_experiment_by_name("exported").experiment_id])
    highest = {}
    for run in exported:
        assert run.data.tags["memsweep.step"] == "seconds"
        points = client.get_metric_history(run.info.run_id, "memory/trainable/pss_bytes")
        highest[int(run.data.params["hold_bytes"])] = max(p.value for p in points)
    assert sorted(highest) == sorted(by_hold)
    assert highest[320 * MiB] - highest[64 * MiB] == pytest.approx(256 * MiB, rel=0.15)

"""``predict --emit ray``: the emitted code, run as a user pastes it, on a real local Ray.

A node with enough Ray ``memory`` places the trial (its placement group reserves what was
requested) and the trial runs to the end; a node with less refuses to place it: the trial
stays pending, it is never started and then killed."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from memsweep.analyze.analysis import analyze_results
from memsweep.analyze.prediction import PredictPoint, predict
from memsweep.cli.main import main
from memsweep.report.emit import MIB, emit_ray, ray_request

REPO = Path(__file__).resolve().parents[2]
WORKERS = REPO / "results" / "claims-2cpu-24gb" / "workers"
pytestmark = pytest.mark.skipif(not WORKERS.is_dir(), reason="no committed claims run")


def test_requests_are_the_upper_bound_plus_the_margin() -> None:
    prediction = predict(analyze_results(WORKERS), PredictPoint(num_workers=2))
    request = ray_request(prediction, margin=0.5)
    trainable = next(r for r in prediction.roles if r.role == "trainable")
    runners = next(r for r in prediction.roles if r.role == "env_runner")
    assert trainable.peak is not None and runners.peak is not None
    assert 0 <= request.trainable_bytes - 1.5 * trainable.peak.high < MIB
    assert 0 <= request.env_runner_bytes - 1.5 * runners.peak.high / 2 < MIB
    assert [b["memory"] for b in request.bundles] == [
        request.trainable_bytes,
        request.env_runner_bytes,
        request.env_runner_bytes,
    ]
    assert request.nodes_needed(None) == 1
    # A node the size of the largest bundle, or of two runners, holds the three in two.
    per_node = max(request.trainable_bytes, 2 * request.env_runner_bytes)
    assert request.nodes_needed(per_node) == 2
    assert request.nodes_needed(request.trial_bytes) == 1


def test_emit_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["analyze", "predict", str(WORKERS), "--num-workers", "1", "--emit", "ray"])
    out = capsys.readouterr().out
    assert code == 0 and "tune.PlacementGroupFactory" in out and "ray start --memory=" in out
    compile(out, "<emitted>", "exec")
    assert main(["analyze", "predict", str(WORKERS), "--emit", "ray", "--margin", "x"]) != 0
    assert "--margin" in capsys.readouterr().err


class _Statuses:
    """A Tune callback recording which trials started, every status seen while the
    experiment ran, and each trial's final status."""

    def __init__(self) -> None:
        from ray import tune

        outer = self
        self.started: list[str] = []
        self.final: list[str] = []
        self.running: set[str] = set()

        class Callback(tune.Callback):
            def on_trial_start(self, iteration: int, trials: Any, trial: Any, **info: Any) -> None:
                outer.started.append(trial.trial_id)

            def on_step_end(self, iteration: int, trials: Any, **info: Any) -> None:
                outer.running.update(t.status for t in trials)

            def on_experiment_end(self, trials: Any, **info: Any) -> None:
                outer.final = [t.status for t in trials]

        self.callback = Callback()


def test_an_extrapolated_request_says_so_and_never_asks_zero_for_a_role() -> None:
    # GIVEN the default sweep (env runners measured at 0 and 2; the trainable's memory falls
    # when its sampling moves to remote env runners)
    analysis = analyze_results(REPO / "results" / "reference-default")
    point = PredictPoint(replay_capacity=5000, num_workers=12, framework="torch", model="64x64")
    prediction = predict(analysis, point)
    code = emit_ray(prediction)
    # THEN the code warns that it extrapolates, and the trainable still gets its memory
    assert "# WARNING: extrapolating: num_workers 12" in code
    assert "above the measured range 0–2" in code
    trainable = next(r for r in prediction.roles if r.role == "trainable")
    assert trainable.plateau.value > 400e6 and ray_request(prediction).trainable_bytes > 400e6
    # AND the total holds at least its roles
    assert prediction.total.plateau.value >= sum(r.plateau.value for r in prediction.roles)


@pytest.mark.slow
def test_emitted_requests_are_placed_and_an_undersized_node_refuses(
    ray_with_memory: Callable[[int], object], tmp_path: Path
) -> None:
    from ray import tune

    def sleeper(config: dict[str, Any]) -> None:
        # Defined here so Ray pickles it by value (the test module is not importable).
        import ray
        from ray import tune

        time.sleep(1)
        tune.report({"available_memory": ray.available_resources().get("memory", 0.0)})

    # GIVEN the code emitted for one env runner, pasted under a user's trainable
    prediction = predict(analyze_results(WORKERS), PredictPoint(num_workers=1))
    request = ray_request(prediction)
    namespace: dict[str, Any] = {"trainable": sleeper}
    exec(emit_ray(prediction), namespace)
    trainable = namespace["trainable"]
    assert [b["memory"] for b in namespace["resources"].bundles] == [
        b["memory"] for b in request.bundles
    ]

    # WHEN a node has the memory the emitted comment asks for
    node = request.trial_bytes + 64 * MIB
    ray_with_memory(node)
    seen = _Statuses()
    results = tune.Tuner(
        trainable,
        run_config=tune.RunConfig(
            storage_path=str(tmp_path), name="fits", callbacks=[seen.callback]
        ),
    ).fit()
    # THEN the trial is placed, its placement group holds the requested memory, it ends
    assert not results.errors and seen.final == ["TERMINATED"]
    reserved = node - results[0].metrics["available_memory"]
    assert reserved >= request.trial_bytes

    # WHEN the node has less Ray memory than the trial requests
    ray_with_memory(request.trial_bytes - 64 * MIB)
    seen = _Statuses()
    tune.Tuner(
        trainable,
        # Several times what placing the fitting trial above takes (a second or two).
        tune_config=tune.TuneConfig(time_budget_s=8),
        run_config=tune.RunConfig(
            storage_path=str(tmp_path), name="refused", callbacks=[seen.callback]
        ),
    ).fit()
    # THEN Ray never places it: pending the whole time, never started (so never killed
    # mid-run); Tune ends it unstarted when the time budget runs out
    assert seen.started == [] and "PENDING" in seen.running
    assert not seen.running & {"RUNNING", "ERROR"}


def test_the_emitted_point_shows_counts_as_whole_numbers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN the reference run, whose model's parameter count is a median carried as a
    # float (it came out 328705.99999999994 once)
    reference = REPO / "results" / "reference-default"
    point = ["--replay-capacity", "12000", "--num-workers", "2", "--model", "256,256"]
    # WHEN its code is emitted
    assert main(["analyze", "predict", str(reference), *point, "--framework", "torch",
                 "--emit", "ray"]) == 0  # fmt: skip
    # THEN the header names every count as a whole number
    header = capsys.readouterr().out.splitlines()[0]
    for name in ("replay_capacity", "num_workers", "model_params"):
        value = header.split(f"{name}=", 1)[1].split(",", 1)[0]
        assert value.isdigit(), header

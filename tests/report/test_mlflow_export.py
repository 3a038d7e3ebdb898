"""``memsweep export-mlflow``: the committed default sweep exported into a temporary MLflow
tracking store and read back through MLflow's own client; the numbers are checked
against the Parquet files they came from."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from memsweep.analyze.analysis import analyze_results

REFERENCE = Path(__file__).resolve().parents[2] / "results" / "reference-default"


def memsweep(*args: str | Path, cwd: Path, pre: str = "") -> subprocess.CompletedProcess[str]:
    code = f"{pre}import sys; from memsweep.cli.main import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def history(client: object, run_id: str, key: str) -> list[tuple[int, int, float]]:
    points = client.get_metric_history(run_id, key)  # type: ignore[attr-defined]
    return sorted((m.timestamp, m.step, m.value) for m in points)


@pytest.mark.medium
def test_every_trial_is_a_run_with_its_factors_and_the_parquet_memory_over_env_steps(
    tmp_path: Path,
) -> None:
    from mlflow.tracking import MlflowClient

    # GIVEN the committed default sweep and an empty tracking store
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    trials = pq.read_table(REFERENCE / "trials.parquet").to_pylist()
    # WHEN it is exported
    done = memsweep("export-mlflow", REFERENCE, "--tracking-uri", uri, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{len(trials)} trial(s) exported" in done.stdout
    # THEN every trial is one run, named by its trial id, its factors as params
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("default")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == sorted(t["trial_id"] for t in trials)
    samples = ds.dataset(REFERENCE / "samples").to_table().to_pandas()
    versions = json.loads((REFERENCE / "versions.json").read_text())
    analysis = analyze_results(REFERENCE)
    for trial in trials:
        run = runs[trial["trial_id"]]
        factors = json.loads(trial["factors_json"])
        assert run.data.params == {k: str(v) for k, v in factors.items()}
        assert run.data.tags["memsweep.step"] == "env_steps"
        assert run.data.tags["versions/ray"] == versions["packages"]["ray"]
        verdict = analysis.verdict(trial["trial_id"]).verdict
        assert run.data.tags["growth/total"] == verdict
        rows = samples[samples["trial_id"] == trial["trial_id"]]
        # The one peak, from every raw sample: for a one-process trial, its largest PSS.
        if factors["num_workers"] == 0:
            assert run.data.metrics["summary/total/peak_bytes"] == rows["pss_bytes"].max()
        # Each history point is the mean of the role's PSS readings over its time bucket:
        # within the readings of that role in the bucket around the point's time.
        total = history(client, run.info.run_id, "memory/total/pss_bytes")
        trainable = history(client, run.info.run_id, "memory/trainable/pss_bytes")
        assert len(total) >= 10
        width_ms = float(np.median(np.diff([t for t, _, _ in trainable])))
        one = rows[rows["role"] == "trainable"].dropna(subset=["pss_bytes"])
        one_ms = one["ts"].astype("int64").to_numpy() / 1000  # µs → ms
        for stamp, _, value in trainable:
            near = one["pss_bytes"].to_numpy()[np.abs(one_ms - stamp) <= width_ms]
            if factors["num_workers"] == 0:
                assert near.min() <= value <= near.max()
        # Roles add up to the trial (PSS splits shared pages), point by point.
        runner = dict(
            (t, v) for t, _, v in history(client, run.info.run_id, "memory/env_runner/pss_bytes")
        )
        for (stamp, _, value), (stamp2, _, own) in zip(total, trainable, strict=True):
            assert stamp == stamp2
            assert value == pytest.approx(own + runner.get(stamp, 0.0), abs=1)
        # Steps are env steps: never decreasing, ending near the trial's own count.
        steps = [step for _, step, _ in total]
        assert steps == sorted(steps)
        assert steps[-1] == pytest.approx(trial["env_steps"], rel=0.1)
    # AND exporting again adds nothing
    again = memsweep("export-mlflow", REFERENCE, "--tracking-uri", uri, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"{len(trials)} trial(s) already there, skipped" in again.stdout
    assert len(client.search_runs([experiment.experiment_id])) == len(trials)


def test_without_mlflow_it_says_what_to_install_in_one_line(tmp_path: Path) -> None:
    # GIVEN a Python where `import mlflow` fails
    done = memsweep(
        "export-mlflow", REFERENCE, cwd=tmp_path, pre="import sys; sys.modules['mlflow'] = None; "
    )
    # THEN one line names the extra, exit 2 (bad input: what the command needs is missing)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "memsweep: export-mlflow needs MLflow: pip install 'memsweep[mlflow]'"
    ]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.medium
def test_a_store_that_cannot_be_opened_is_one_line_and_exit_5(tmp_path: Path) -> None:
    # GIVEN a SQLite store under a file, not a folder
    (tmp_path / "a-file").write_text("")
    uri = f"sqlite:///{tmp_path / 'a-file' / 'mlflow.db'}"
    done = memsweep("export-mlflow", REFERENCE, "--tracking-uri", uri, cwd=tmp_path)
    # THEN one line names the URI and the fix
    assert done.returncode == 5, done.stderr[-2000:]
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"memsweep: --tracking-uri {uri}: cannot open the tracking store (")
    assert line.endswith("give a store you can write to, e.g. sqlite:///mlflow.db")


@pytest.mark.medium
def test_an_unreachable_tracking_server_is_one_line_within_a_minute(tmp_path: Path) -> None:
    # GIVEN a tracking URI where nothing listens (MLflow's own retries took ~4 min)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "memsweep",
            "export-mlflow",
            str(REFERENCE),
            "--tracking-uri",
            "http://127.0.0.1:9",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    # THEN it fails within the timeout, in one line naming the URI, exit 2
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--tracking-uri http://127.0.0.1:9" in lines[0], done.stderr

"""MLflow's system metrics, watching this machine while the peak-capture trials run.

Runs in MLflow's own virtualenv (MLflow is not a memsweep dependency), so it imports
nothing of memsweep's. It starts an MLflow run with system metrics on, offline, against
a local store (a SQLite file: MLflow 3 refuses its old ``file://`` store unless told to
with ``MLFLOW_ALLOW_FILE_STORE``, and recommends SQLite), and prints ``ready``; when its
stdin closes it ends the run and prints one JSON line: what MLflow logged as
``system/system_memory_usage_megabytes``, step by step, with the moment each value was
sampled.

MLflow logs a value one sampling interval after it sampled it (its monitor samples, then
waits, then logs), so the logged timestamp is not the moment measured; this script wraps
``CPUMonitor.collect_metrics`` to note the sampling moments, without changing the values.
With MLflow's default of one sample per logged step, step ``k`` is sample ``k``.

Usage (by ``bench_mlflow.py``): ``python mlflow_sidecar.py TRACKING_DIR``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

MEMORY_KEY = "system/system_memory_usage_megabytes"


def main(tracking_dir: str) -> int:
    import mlflow
    from mlflow.environment_variables import MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL
    from mlflow.system_metrics.metrics.cpu_monitor import CPUMonitor
    from mlflow.tracking import MlflowClient

    sampled_at: list[float] = []
    original = CPUMonitor.collect_metrics

    def timed(self: CPUMonitor) -> None:
        sampled_at.append(time.time())
        original(self)

    CPUMonitor.collect_metrics = timed  # type: ignore[method-assign]

    folder = Path(tracking_dir).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("memsweep-bench")
    mlflow.enable_system_metrics_logging()
    run = mlflow.start_run(run_name="peak-capture")
    started = time.time()
    print("ready", flush=True)
    sys.stdin.read()
    mlflow.end_run()
    history = MlflowClient(uri).get_metric_history(run.info.run_id, MEMORY_KEY)
    # SystemMetricsMonitor's default when the environment does not set one.
    interval_s = MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL.get() or 10.0
    print(
        json.dumps(
            {
                "mlflow_version": mlflow.__version__,
                "sampling_interval_s": interval_s,
                "started": started,
                "sampled_at": sampled_at,
                "logged": [
                    {"step": m.step, "timestamp_ms": m.timestamp, "megabytes": m.value}
                    for m in sorted(history, key=lambda m: m.step)
                ],
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

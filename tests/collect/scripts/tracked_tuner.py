"""A plain Tune function trainable that holds a known number of bytes, with memsweep's
callback: the per-role memory keys reach Tune's results, its TensorBoard logger and
Ray's MLflow logger callback (a SQLite tracking store ``OUT/mlflow.db``, experiment
``tracked``).

Usage: python tracked_tuner.py OUT. Prints one line per trial:
``ROLEKEYS <hold_bytes> <json of the last result's memory/* keys> <trial path>``.
"""

import json
import sys
import time

import ray
from ray import tune
from ray.air.integrations.mlflow import MLflowLoggerCallback

import memsweep


def hold(config: dict) -> None:
    import numpy as np

    held = np.ones(int(config["hold_bytes"]), dtype=np.uint8)  # Every page touched.
    for step in range(int(config["reports"])):
        time.sleep(1.0)
        tune.report({"step": step, "held_first": int(held[0])})


out = sys.argv[1]
ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
tuner = tune.Tuner(
    hold,
    param_space={"hold_bytes": tune.grid_search([64 * 2**20, 320 * 2**20]), "reports": 6},
    # Side by side (a CPU each): what is compared is memory, per trial's own processes.
    tune_config=tune.TuneConfig(max_concurrent_trials=2),
    run_config=tune.RunConfig(
        storage_path=f"{out}/tune",
        name="tracked",
        callbacks=[
            memsweep.MemoryCallback(f"{out}/results"),  # First: it adds the keys.
            MLflowLoggerCallback(
                tracking_uri=f"sqlite:///{out}/mlflow.db", experiment_name="tracked"
            ),
        ],
        verbose=0,
    ),
)
grid = tuner.fit()
for result in grid:
    metrics = result.metrics or {}
    memory = {k: v for k, v in metrics.items() if k.startswith("memory/")}
    print(
        "ROLEKEYS",
        result.config["hold_bytes"],
        json.dumps(memory, separators=(",", ":")),
        result.path,
    )

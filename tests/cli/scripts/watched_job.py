"""A Ray job that memsweep watch attaches to: an actor holding HOG_BYTES outside any
placement group, and two Tune trials holding ``held_mb`` MB each (200 and 250, a grid
over the trial's config), for HOLD_S seconds each.

Usage: python watched_job.py GCS_ADDRESS TUNE_DIR. Prints its job id first, then the
hog's pid, then one line per trial: TRIAL <pid> <Tune trial id> <held_mb>.
"""

import os
import sys
import time

import numpy as np
import ray
from ray import tune

HOG_BYTES = 300_000_000
# Long enough that the watch (naming trials every second) has each trial's trainable
# named and sampled at 10 Hz for seconds, also on a loaded machine.
HOLD_S = 12.0

ray.init(address=sys.argv[1], log_to_driver=False)
print("JOB", ray.get_runtime_context().get_job_id(), flush=True)


@ray.remote(num_cpus=0)
class Hog:
    def __init__(self) -> None:
        self.held = np.ones(HOG_BYTES, dtype=np.uint8)

    def pid(self) -> int:
        return os.getpid()


def hold(config: dict) -> None:
    held = np.ones(config["held_mb"] * 1_000_000, dtype=np.uint8)
    time.sleep(HOLD_S)
    tune.report({"pid": os.getpid(), "held": int(held[0])})


hog = Hog.remote()
print("HOG", ray.get(hog.pid.remote()), flush=True)
time.sleep(5)  # the watch attaches
tuner = tune.Tuner(
    tune.with_resources(hold, {"cpu": 1}),
    param_space={"held_mb": tune.grid_search([200, 250])},
    run_config=tune.RunConfig(storage_path=sys.argv[2], verbose=0),
)
for result in tuner.fit():
    metrics = result.metrics
    print("TRIAL", metrics["pid"], metrics["trial_id"], result.config["held_mb"], flush=True)

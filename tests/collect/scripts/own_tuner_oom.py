"""A plain Tune script whose second trial Ray's memory monitor kills.

Usage: python own_tuner_oom.py OUT. The memory monitor's threshold comes from the
environment (RAY_memory_usage_threshold), set by the test. Ray without its dashboard.
"""

import sys

import ray
from ray import tune

import memsweep
from memsweep.testing.calibration import grow_steadily

out = sys.argv[1]
ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
small, big = 200_000_000, 12_000_000_000
tuner = tune.Tuner(
    tune.with_resources(grow_steadily, {"cpu": 1}),
    param_space={
        "max_bytes": tune.grid_search([big, small]),
        "step_bytes": 100_000_000,
        "step_s": 0.05,
    },
    tune_config=tune.TuneConfig(max_concurrent_trials=1),
    run_config=tune.RunConfig(
        storage_path=f"{out}/tune",
        callbacks=[memsweep.MemoryCallback(f"{out}/results")],
        verbose=0,
    ),
)
with memsweep.survive_oom_kills():
    grid = tuner.fit()
print("TRIALS", len(grid), "ERRORS", sum(1 for r in grid if r.error is not None))

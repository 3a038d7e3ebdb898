"""A user's own RLlib Tune script, with only memsweep's public callback added.

Usage: python own_ppo_tuner.py OUT. Ray without its dashboard, as many scripts start it.
"""

import sys

import ray
from ray import tune
from ray.rllib.algorithms.ppo import PPOConfig

import memsweep

out = sys.argv[1]
ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
config = (
    PPOConfig()
    .environment("CartPole-v1")
    .env_runners(num_env_runners=1, num_cpus_per_env_runner=0.5)
    .learners(num_learners=0)
    .training(
        train_batch_size_per_learner=tune.grid_search([256, 512]),
        minibatch_size=64,
        num_epochs=1,
    )
)
tuner = tune.Tuner(
    "PPO",
    param_space=config,
    tune_config=tune.TuneConfig(max_concurrent_trials=1),
    run_config=tune.RunConfig(
        storage_path=f"{out}/tune",
        # Long enough that the collector has attributed and sampled (PSS at 1 Hz) each
        # trial before its last result, also on a loaded machine.
        stop={"training_iteration": 6},
        callbacks=[memsweep.MemoryCallback(f"{out}/results")],
        verbose=0,
    ),
)
with memsweep.survive_oom_kills():
    grid = tuner.fit()
for result in grid:
    metrics = result.metrics or {}
    print("RESULT", result.error is None, metrics.get(memsweep.result_keys.PEAK_BYTES))

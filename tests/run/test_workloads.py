"""A study point becomes the RLlib trial it describes: on real Ray, real RLlib, no mocks.

One Ray instance (2 CPUs, as on the laptop) serves the whole module. The in-process
tests build algorithms in the pytest process; the Tune tests run ``MemsweepTrainable``
trials and look inside their processes while they run.
"""

from __future__ import annotations

import itertools
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

os.environ["TF_USE_LEGACY_KERAS"] = "1"

import ray
from ray import cloudpickle, tune

from memsweep.errors import SpecError
from memsweep.run.built import built_facts, env_steps, replay_size, stop_algorithm
from memsweep.run.envs import SyntheticEnv
from memsweep.run.trainable import MemsweepTrainable
from memsweep.run.workloads import algorithm_class, build_config
from memsweep.spec import (
    EnvSpec,
    Factors,
    ModelSpec,
    Study,
    TrainingSpec,
    TrialPoint,
    parse_study,
    point_from_config,
)
from memsweep.testing.raycluster import explicit_auth

# Trainable subclasses and callbacks below run in Ray workers, which cannot import this
# test module: ship them by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

TINY_TRAINING = TrainingSpec(learning_starts=32, train_batch_size=16, rollout_fragment_length=8)
"""Small enough that one train() call takes a second or two on 2 cores."""

TUNE_TRAINING = TrainingSpec(learning_starts=32, train_batch_size=16, rollout_fragment_length=128)
"""For Tune trials, whose iterations sample RLlib's default 1000 steps: few, long
fragments keep the number of (slow, on 2 shared cores) gradient updates small."""

CARTPOLE_OBS_DIM = 4
CARTPOLE_ACTIONS = 2


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    with explicit_auth("disabled"):
        ray.init(
            address="local",
            num_cpus=2,
            runtime_env={"env_vars": {"TF_USE_LEGACY_KERAS": "1"}},
            logging_level="ERROR",
            log_to_driver=False,
        )
        try:
            yield
        finally:
            ray.shutdown()


def dense_params(sizes: list[int]) -> int:
    """Weights and biases of a chain of dense layers with these widths."""
    return sum(n_in * n_out + n_out for n_in, n_out in itertools.pairwise(sizes))


def expected_dqn_params(hidden: tuple[int, ...], api_stack: str) -> int:
    """memsweep's DQN on CartPole (no dueling, no head layers) is the MLP from the
    observation through ``hidden`` to the action values. On the old stack RLlib's
    fully-connected model (torch and TF alike) also holds its own value layer
    (last hidden → 1), unused by DQN but built and counted."""
    mlp = dense_params([CARTPOLE_OBS_DIM, *hidden, CARTPOLE_ACTIONS])
    return mlp + (dense_params([hidden[-1], 1]) if api_stack == "old" else 0)


def cartpole_study(api_stack: str = "auto", **factors: Any) -> Study:
    return Study(
        name="workloads-test",
        api_stack=api_stack,
        factors=Factors(**factors) if factors else Factors(),
        training=TINY_TRAINING,
    )


# (framework, api_stack, capacity, hidden, num_workers): each reads back differently.
FRAMEWORK_CASES = [
    pytest.param("torch", "auto", 3_000, (32, 16), 2, id="torch-new-stack"),
    pytest.param("torch", "old", 2_500, (24,), 1, id="torch-old-stack"),
    pytest.param("tf2", "auto", 2_000, (16, 16), 1, id="tf2", marks=pytest.mark.tf),
    pytest.param("tf2-eager", "auto", 1_500, (8,), 0, id="tf2-eager", marks=pytest.mark.tf),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("framework", "api_stack", "capacity", "hidden", "workers"), FRAMEWORK_CASES
)
def test_a_small_dqn_builds_exactly_what_the_point_asks_and_its_buffer_fills(
    ray_cluster: None,
    framework: str,
    api_stack: str,
    capacity: int,
    hidden: tuple[int, ...],
    workers: int,
) -> None:
    # GIVEN a CartPole DQN point with its own capacity, model and number of env runners
    study = cartpole_study(api_stack)
    point = TrialPoint(
        replay_capacity=capacity,
        model=ModelSpec(hidden=hidden),
        num_workers=workers,
        framework=framework,
    )
    config = build_config(study, point).reporting(min_sample_timesteps_per_iteration=64)

    # WHEN RLlib builds it
    algo = config.build_algo()
    try:
        facts = built_facts(algo)
        stored_before = replay_size(algo)
        result = algo.train()

        # THEN what RLlib built is exactly what was asked
        assert facts.replay_capacity == capacity
        assert facts.num_env_runners == workers
        stack = point.api_stack(study)
        assert facts.model_params == expected_dqn_params(hidden, stack)
        assert facts.obs_bytes == CARTPOLE_OBS_DIM * 4  # float32
        assert len(facts.env_runner_pids) == workers + 1
        assert facts.env_runner_pids[0] == os.getpid()
        # AND one iteration stores every sampled step
        assert stored_before == 0
        assert env_steps(result) >= 64
        assert replay_size(algo) == env_steps(result)
    finally:
        stop_algorithm(algo)


@pytest.mark.slow
def test_old_stack_dqn_from_upstream_still_fails_so_memsweep_keeps_its_fix(
    ray_cluster: None,
) -> None:
    # GIVEN an old-stack DQN config built with RLlib's own DQN class
    study = cartpole_study("old")
    point = TrialPoint(
        replay_capacity=1_000, model=ModelSpec(hidden=(8,)), num_workers=0, framework="torch"
    )
    config = build_config(study, point)
    assert algorithm_class(study, point).__name__ == "MemsweepDQN"
    from ray.rllib.algorithms.dqn import DQN

    config.algo_class = DQN

    # WHEN it is built THEN ray-project/ray#60491 still bites. When this stops raising,
    # upstream has fixed it: drop memsweep.run.workarounds.rllib and this test.
    with pytest.raises(TypeError, match="argument of type 'ABCMeta' is not iterable"):
        config.build_algo()


SYNTHETIC_CASES = [
    pytest.param("auto", (1024,), "float32", 1024 * 4, id="new-stack-float32"),
    pytest.param("old", (84, 84, 4), "uint8", 84 * 84 * 4, id="old-stack-uint8-image"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("api_stack", "shape", "dtype", "obs_bytes"), SYNTHETIC_CASES)
def test_a_synthetic_env_stores_observations_of_the_asked_size(
    ray_cluster: None, api_stack: str, shape: tuple[int, ...], dtype: str, obs_bytes: int
) -> None:
    # GIVEN a study of synthetic observations of a chosen size, sampled in the trainable
    study = Study(
        name="synthetic",
        api_stack=api_stack,
        env=EnvSpec(id="memsweep/Synthetic-v0", obs_shape=shape, obs_dtype=dtype, episode_len=50),
        training=TINY_TRAINING,
    )
    point = TrialPoint(
        replay_capacity=500, model=ModelSpec(hidden=(16,)), num_workers=0, framework="torch"
    )

    # WHEN RLlib builds and trains it once
    algo = build_config(study, point).reporting(min_sample_timesteps_per_iteration=64).build_algo()
    try:
        facts = built_facts(algo)
        result = algo.train()

        # THEN one stored observation has the asked size and the buffer holds every step
        assert facts.obs_bytes == obs_bytes
        assert replay_size(algo) == env_steps(result) >= 64
    finally:
        stop_algorithm(algo)


def test_uint8_synthetic_observations_on_the_new_stack_are_refused_with_the_fix() -> None:
    # GIVEN a sweep with uint8 synthetic observations and a torch trial on the new stack
    data = {
        "name": "synthetic",
        "env": {"id": "memsweep/Synthetic-v0", "obs_shape": [1024], "obs_dtype": "uint8"},
    }
    # WHEN it is validated THEN the error says what to change, before any config is built
    with pytest.raises(SpecError, match="set api_stack: old or obs_dtype: float32"):
        parse_study(data)


# (algorithm, capacity, capacity RLlib builds, env runners): APPO needs a remote one.
OTHER_ALGORITHMS = [
    # Large enough that one iteration (1,024 env steps at training_intensity 0.25) does
    # not fill it: a full episode buffer evicts whole episodes.
    pytest.param("SAC", 4000, 4000, 0, id="SAC"),
    pytest.param("PPO", 0, None, 0, id="PPO"),
    pytest.param("APPO", 0, None, 1, id="APPO"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("algorithm", "capacity", "built_capacity", "workers"), OTHER_ALGORITHMS)
def test_every_other_algorithm_builds_and_trains_on_the_new_stack(
    ray_cluster: None, algorithm: str, capacity: int, built_capacity: int | None, workers: int
) -> None:
    # GIVEN a torch point for SAC (with a replay buffer) or PPO/APPO (without)
    study = Study(
        name="algorithms",
        algorithm=algorithm,
        factors=Factors(replay_capacity=[capacity]),
        training=TrainingSpec(learning_starts=32, train_batch_size=64, rollout_fragment_length=16),
    )
    point = TrialPoint(
        replay_capacity=capacity,
        model=ModelSpec(hidden=(32,)),
        num_workers=workers,
        framework="torch",
    )

    # WHEN RLlib builds it and trains once (APPO's iterations last 10 s by default)
    config = build_config(study, point).reporting(
        min_sample_timesteps_per_iteration=64, min_time_s_per_iteration=0
    )
    algo = config.build_algo()
    try:
        facts = built_facts(algo)
        result = algo.train()

        # THEN it has the asked buffer (or none) and runner, and counts its steps
        assert facts.replay_capacity == built_capacity
        assert facts.num_env_runners == workers
        assert facts.model_params > dense_params([CARTPOLE_OBS_DIM, 32])
        assert env_steps(result) > 0
        assert replay_size(algo) == (None if built_capacity is None else env_steps(result))
    finally:
        stop_algorithm(algo)


ATARI_CASES = [
    # The new stack's Atari wrapper scales frames to float32: 4 bytes per pixel.
    pytest.param("auto", 84 * 84 * 4 * 4, id="new-stack-float32-frames"),
    pytest.param("old", 84 * 84 * 4, id="old-stack-uint8-frames"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("api_stack", "obs_bytes"), ATARI_CASES)
def test_an_atari_trial_stores_84x84x4_frames_as_its_stack_does(
    ray_cluster: None, api_stack: str, obs_bytes: int
) -> None:
    # GIVEN an ALE Pong point with a conv stack that ends at 1x1 (as the old stack needs)
    model = ModelSpec(conv=((16, 8, 4), (32, 4, 2), (64, 11, 1)), hidden=(32,))
    study = Study(
        name="atari",
        api_stack=api_stack,
        env=EnvSpec(id="ALE/Pong-v5"),
        factors=Factors(model=[model]),
        training=TINY_TRAINING,
    )
    point = TrialPoint(replay_capacity=200, model=model, num_workers=0, framework="torch")

    # WHEN RLlib builds it and trains once
    config = build_config(study, point).reporting(min_sample_timesteps_per_iteration=32)
    algo = config.build_algo()
    try:
        facts = built_facts(algo)
        result = algo.train()

        # THEN observations are RLlib's preprocessed frames and the buffer fills
        assert facts.obs_bytes == obs_bytes
        assert replay_size(algo) == env_steps(result) >= 32
    finally:
        stop_algorithm(algo)


def test_the_synthetic_env_is_fast_and_ends_episodes_on_time() -> None:
    # GIVEN a synthetic env of 1024 float32 observations and 100-step episodes
    env = SyntheticEnv({"obs_shape": [1024], "obs_dtype": "float32", "episode_len": 100})
    obs, _ = env.reset(seed=3)
    assert (
        obs.shape == (1024,) and obs.dtype.name == "float32" and env.observation_space.contains(obs)
    )

    # WHEN it runs 10 000 steps
    start_s = time.perf_counter()
    episodes = 0
    for _ in range(10_000):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            episodes += 1
            env.reset()
    elapsed_s = time.perf_counter() - start_s

    # THEN it is far faster than RLlib samples (~2k steps/s here) and episodes last 100
    assert 10_000 / elapsed_s > 20_000
    assert episodes == 100
    assert reward == 1.0


def test_a_random_search_trial_config_names_its_model_by_label() -> None:
    # GIVEN a study with two models and a flat Tune config as random/Optuna modes make
    study = cartpole_study(model=[ModelSpec(hidden=(64, 64)), ModelSpec(hidden=(256,))])
    flat = {
        "replay_capacity": 50_000,
        "model": "256",
        "num_workers": 2,
        "framework": "torch",
        "repeat": 1,
    }

    # WHEN the trainable reads it THEN it gets the study's model and the repeat's seed
    point = point_from_config(study, {"study": study.model_dump(mode="json"), **flat})
    assert point.model == ModelSpec(hidden=(256,))
    assert (point.num_workers, point.repeat, point.seed) == (2, 1, study.seed + 1)

    # AND a grid config round-trips the point unchanged
    grid = {"study": study.model_dump(mode="json"), "point": point.model_dump(mode="json")}
    assert point_from_config(study, grid) == point

    # AND an unknown label names the allowed ones
    with pytest.raises(SpecError, match="model '128' is not one of the study's"):
        point_from_config(study, {**flat, "model": "128"})


@pytest.mark.parametrize(
    ("result", "steps"),
    [
        ({"num_env_steps_sampled_lifetime": 112.0, "env_runners": {}}, 112),
        ({"env_runners": {"num_env_steps_sampled_lifetime": 96.0}}, 96),
        ({"env_runners/num_env_steps_sampled_lifetime": 80}, 80),
        ({"num_env_steps_sampled": 104, "timesteps_total": 104}, 104),
    ],
)
def test_env_steps_reads_either_stacks_result(result: dict[str, Any], steps: int) -> None:
    assert env_steps(result) == steps


# --- Tune trials: what happens inside the trial's own processes -----------------------


class ProbedTrainable(MemsweepTrainable):
    """MemsweepTrainable that also reports which of its processes imported TensorFlow."""

    def step(self) -> dict[str, Any]:
        result = super().step()
        result["probe/tf_in_trainable"] = "tensorflow" in sys.modules
        result["probe/rllib_in_trainable"] = "ray.rllib" in sys.modules
        result["probe/tf_in_env_runners"] = self.algo.env_runner_group.foreach_env_runner(
            lambda runner: "tensorflow" in sys.modules, local_env_runner=False
        )
        return result


class ActorSnapshot(tune.Callback):
    """Lists the cluster's live actors while each trial is running (on its first result)."""

    def __init__(self, gcs_address: str) -> None:
        # Explicit, since other Ray instances may run on the same machine.
        self.gcs_address = gcs_address
        self.actors: dict[str, list[dict[str, Any]]] = {}

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        from ray.util.state import list_actors

        if trial.trial_id not in self.actors:
            alive = list_actors(
                address=self.gcs_address,
                detail=True,
                filters=[("state", "=", "ALIVE")],
                limit=1000,
            )
            self.actors[trial.trial_id] = [
                {
                    "class_name": a.class_name,
                    "placement_group_id": a.placement_group_id,
                    "pid": a.pid,
                }
                for a in alive
            ]


EIGHT_RUNNERS = TrialPoint(
    replay_capacity=2_000, model=ModelSpec(hidden=(16,)), num_workers=8, framework="torch"
)


def tune_study(api_stack: str = "auto") -> Study:
    return Study(
        name="tune-trials",
        api_stack=api_stack,
        factors=Factors(
            num_workers=[8, 1], framework=["torch", "tf2"], replay_capacity=[2_000], model=[[16]]
        ),
        training=TUNE_TRAINING,
    )


TUNE_TRIALS = {
    "torch-new-8-runners": (tune_study(), EIGHT_RUNNERS),
    "torch-old": (tune_study("old"), EIGHT_RUNNERS.model_copy(update={"num_workers": 1})),
    "tf2": (tune_study(), EIGHT_RUNNERS.model_copy(update={"num_workers": 1, "framework": "tf2"})),
}
"""Three trials, one iteration each: labelled (study, point) pairs."""


@pytest.fixture(scope="module")
def tune_trials(ray_cluster: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Runs :data:`TUNE_TRIALS` under Tune; their last results and the live actors."""
    snapshot = ActorSnapshot(ray.get_runtime_context().gcs_address)
    tuner = tune.Tuner(
        ProbedTrainable,
        param_space={
            "label": tune.grid_search(list(TUNE_TRIALS)),
            "study": tune.sample_from(
                lambda spec: TUNE_TRIALS[spec.config.label][0].model_dump(mode="json")
            ),
            "point": tune.sample_from(
                lambda spec: TUNE_TRIALS[spec.config.label][1].model_dump(mode="json")
            ),
        },
        run_config=tune.RunConfig(
            storage_path=str(tmp_path_factory.mktemp("tune")),
            stop={"training_iteration": 1},
            checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False),
            callbacks=[snapshot],
            verbose=0,
        ),
        tune_config=tune.TuneConfig(reuse_actors=False),
    )
    results = tuner.fit()
    assert not results.errors, results.errors
    by_label = {r.config["label"]: r for r in results}
    assert sorted(by_label) == sorted(TUNE_TRIALS)
    return {
        "results": {label: r.metrics for label, r in by_label.items()},
        "actors": {label: snapshot.actors[r.metrics["trial_id"]] for label, r in by_label.items()},
    }


@pytest.mark.slow
def test_a_torch_trial_never_imports_tensorflow_and_a_tf2_trial_does(
    tune_trials: dict[str, Any],
) -> None:
    # GIVEN torch trials on either stack and a tf2 trial, run by Tune
    results = tune_trials["results"]

    # THEN no process of a torch trial imported TensorFlow, though RLlib is there
    for label, runners in (("torch-new-8-runners", 8), ("torch-old", 1)):
        assert results[label]["probe/rllib_in_trainable"] is True, label
        assert results[label]["probe/tf_in_trainable"] is False, label
        assert results[label]["probe/tf_in_env_runners"] == [False] * runners, label
    # AND every process of the tf2 trial did
    assert results["tf2"]["probe/tf_in_trainable"] is True
    assert results["tf2"]["probe/tf_in_env_runners"] == [True]
    # AND the TF-free processes are lighter: the old-stack torch trial is the tf2 one's twin
    assert results["torch-old"]["memory/rss_bytes"] < results["tf2"]["memory/rss_bytes"]


def test_eight_env_runners_at_a_tenth_of_a_cpu_fit_a_two_cpu_machine() -> None:
    # GIVEN a trial with 8 env runners at the default 0.1 CPU each
    study = cartpole_study(num_workers=[8])
    config = {
        "study": study.model_dump(mode="json"),
        "point": EIGHT_RUNNERS.model_dump(mode="json"),
    }

    # WHEN Tune asks the trainable for its resources
    pgf = MemsweepTrainable.default_resource_request(config)

    # THEN it is one bundle for the trainable and one per runner, 1.8 CPUs in all
    cpus = [bundle.get("CPU", 0) for bundle in pgf.bundles]
    assert cpus == [1.0] + [0.1] * 8
    assert sum(cpus) <= 2


@pytest.mark.slow
def test_the_env_runners_share_the_trial_placement_group(tune_trials: dict[str, Any]) -> None:
    # GIVEN the live actors seen while the 8-runner torch trial ran
    actors = tune_trials["actors"]["torch-new-8-runners"]
    result = tune_trials["results"]["torch-new-8-runners"]
    trainable = [a for a in actors if a["class_name"] == "ProbedTrainable"]
    runners = [a for a in actors if a["class_name"] == "TorchEnvRunner"]

    # THEN all 8 env runners are in the trainable's placement group
    assert len(trainable) == 1 and trainable[0]["placement_group_id"]
    assert len(runners) == 8
    assert {r["placement_group_id"] for r in runners} == {trainable[0]["placement_group_id"]}
    # AND they are the processes the trial reports and measures
    assert result["memsweep/built_num_env_runners"] == 8
    assert sorted(result["memsweep/built_env_runner_pids"][1:]) == sorted(r["pid"] for r in runners)
    assert result["memory/rss_bytes"] > 9 * 50 * 2**20  # 9 Python processes with torch
    # AND the peak is the largest Σ PSS: 9 processes share torch's and RLlib's pages,
    # counted once there and nine times in Σ RSS and Σ VmHWM
    assert result["memory/peak_bytes"] >= result["memory/pss_bytes"]
    assert result["memory/peak_bytes"] < result["memory/rss_bytes"]
    assert result["memory/hwm_bytes"] >= result["memory/rss_bytes"]
    assert result["memsweep/replay_size"] == result["memsweep/env_steps"] > 0

"""A trial's placement group from the spec equals RLlib's own ``default_resource_request``.

The driver computes placement groups without RLlib (:mod:`memsweep.run.placement`); here
RLlib is imported in the test process to compare against its answer for representative
configs: memsweep's algorithms on both API stacks, fractional CPUs, env runners,
evaluation env runners (with an ``evaluation_config`` override), remote learners,
custom resources and a user's ``config:`` that sets its own resources.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from memsweep.run import rllib_check
from memsweep.run.placement import RLLIB_DEFAULTS, bundles, resources_of, trial_resources
from memsweep.run.rllib_check import base_resources
from memsweep.spec import Study, load_study, parse_study

REPO = Path(__file__).resolve().parents[2]

# No RLLIB_TEST_NO_TF_IMPORT here: set in this process it held for the whole pytest
# session, RLlib cached a TensorFlow stub, and later tf2 trials found "no installation".


def study_of(**data: Any) -> Study:
    base: dict[str, Any] = {"name": "placement", "env": "CartPole-v1"}
    return parse_study({**base, **data}, "placement")


def rllib_bundles(study: Study) -> list[tuple[list[dict[str, float]], str]]:
    """RLlib's own answer for every point of ``study``."""
    from memsweep.run.workloads import algorithm_class, build_config

    out = []
    for point in study.points():
        pgf = algorithm_class(study, point).default_resource_request(build_config(study, point))
        out.append(([dict(b) for b in pgf.bundles], pgf.strategy))
    return out


def spec_bundles(study: Study) -> list[tuple[list[dict[str, float]], str]]:
    base = base_resources(study)
    out = []
    for point in study.points():
        settings = trial_resources(study, point, base)
        out.append((bundles(settings), settings.placement_strategy))
    return out


def normalised(
    answer: list[tuple[list[dict[str, float]], str]],
) -> list[tuple[list[dict[str, float]], str]]:
    """Bundles as Ray sees them: zero amounts dropped, numbers as floats."""
    return [
        ([{k: float(v) for k, v in b.items() if v} for b in bs], strategy)
        for bs, strategy in answer
    ]


def in_fresh_python(code: str) -> str:
    """What ``python -c code`` printed in a fresh process (which must exit 0)."""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


CASES = [
    pytest.param(
        {
            "algorithm": "DQN",
            "factors": {"replay_capacity": [500], "num_workers": [0, 2]},
        },
        id="dqn-new-stack",
    ),
    pytest.param(
        {
            "algorithm": "DQN",
            "api_stack": "old",
            "factors": {"replay_capacity": [500], "num_workers": [0, 3]},
            "resources": {"cpus_per_env_runner": 0.25, "cpus_per_trainable": 0.5},
        },
        id="dqn-old-stack-fractional",
    ),
    pytest.param(
        {
            "algorithm": "SAC",
            "env": "Pendulum-v1",
            "factors": {"replay_capacity": [500], "num_workers": [1]},
        },
        id="sac",
    ),
    pytest.param(
        {
            "algorithm": "PPO",
            "factors": {
                "replay_capacity": [0],
                "num_workers": [1],
                "evaluation_num_env_runners": [0, 2],
            },
            "rllib": {
                "evaluation_interval": 1,
                "evaluation_config": {"num_cpus_per_env_runner": 0.5},
            },
        },
        id="ppo-evaluation-runners",
    ),
    pytest.param(
        {
            "algorithm": "PPO",
            "factors": {"replay_capacity": [0], "num_workers": [0], "num_learners": [1, 2]},
            "rllib": {
                "minibatch_size": 8,
                "custom_resources_per_env_runner": {"memory_probe": 0.01},
            },
        },
        id="ppo-remote-learners",
    ),
    pytest.param(
        {
            "algorithm": "APPO",
            "factors": {"replay_capacity": [0], "num_workers": [1]},
        },
        id="appo",
    ),
    pytest.param(
        {
            "algorithm": "IMPALA",
            "factors": {"replay_capacity": [0], "num_workers": [1]},
        },
        id="registered-impala",
    ),
]


@pytest.mark.parametrize("data", CASES)
def test_bundles_from_the_spec_equal_rllibs_own(data: dict[str, Any]) -> None:
    # GIVEN a study
    study = study_of(**data)
    # WHEN its placement groups are computed from the spec, and by RLlib itself
    # THEN they are the same bundles, in the same order, with the same strategy
    assert normalised(spec_bundles(study)) == normalised(rllib_bundles(study))


USER_CONFIG = """\
from ray.rllib.algorithms.ppo import PPOConfig


def make_config():
    return (
        PPOConfig()
        .environment("CartPole-v1")
        .evaluation(evaluation_num_env_runners=1, evaluation_interval=2)
        .resources(placement_strategy="SPREAD")
    )
"""


def test_a_users_config_resources_come_back_from_the_check_subprocess(tmp_path: Path) -> None:
    # GIVEN a user's config: with its own evaluation runners and placement strategy
    (tmp_path / "train.py").write_text(USER_CONFIG)
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        "name: x\nalgorithm: PPO\nconfig: train.py:make_config\n"
        "factors: {replay_capacity: [0], num_workers: [0, 1]}\n"
    )
    study = load_study(sweep)
    # WHEN the RLlib check's subprocess reads it
    checked = rllib_check._check_in_subprocess(study)
    # THEN the settings it hands back are the user's
    assert checked.resources.evaluation_num_env_runners == 1
    assert checked.resources.placement_strategy == "SPREAD"
    # AND every trial's bundles equal RLlib's own for the built config
    assert normalised(spec_bundles(study)) == normalised(rllib_bundles(study))


def test_rllib_defaults_are_those_of_memsweeps_algorithms() -> None:
    from memsweep.run.workloads import algorithm_class
    from memsweep.spec import ALGORITHMS, REPLAY_ALGORITHMS

    for name in ALGORITHMS:
        capacity = 500 if name in REPLAY_ALGORITHMS else 0
        study = study_of(algorithm=name, factors={"replay_capacity": [capacity]})
        config = algorithm_class(study, study.points()[0]).get_default_config()
        # Except what memsweep sets itself for every trial (trial_resources).
        own = dataclasses.replace(
            resources_of(config),
            enable_rl_module_and_learner=RLLIB_DEFAULTS.enable_rl_module_and_learner,
            num_env_runners=RLLIB_DEFAULTS.num_env_runners,
            num_learners=RLLIB_DEFAULTS.num_learners,
        )
        assert own == RLLIB_DEFAULTS, name


def test_the_default_sweep_is_placed_without_importing_rllib() -> None:
    # GIVEN a fresh process that computes every default-sweep trial's placement group
    code = (
        "import sys\n"
        "from memsweep.spec import load_study\n"
        "from memsweep.run.trainable import MemsweepTrainable\n"
        f"study = load_study({str(REPO / 'sweeps' / 'default.yaml')!r})\n"
        "for point in study.points():\n"
        "    config = {'study': study.model_dump(mode='json'),"
        " 'point': point.model_dump(mode='json')}\n"
        "    print(sum(b['CPU'] for b in MemsweepTrainable.default_resource_request(config)"
        ".bundles))\n"
        "assert 'ray.rllib' not in sys.modules, 'placement imported RLlib'\n"
        "assert 'tensorflow' not in sys.modules, 'placement imported TensorFlow'\n"
    )
    printed = in_fresh_python(code)
    # THEN neither RLlib nor TensorFlow is imported, and trials with env runners ask more
    cpus = [float(line) for line in printed.split()]
    assert len(cpus) == len(load_study(REPO / "sweeps" / "default.yaml").points())
    assert min(cpus) < max(cpus)


def test_a_check_error_from_the_subprocess_is_the_same_one_line(tmp_path: Path) -> None:
    # GIVEN a study RLlib refuses, checked in the subprocess (RLlib not imported here)
    code = (
        "import sys\n"
        "from memsweep.errors import SpecError\n"
        "from memsweep.spec import parse_study\n"
        "from memsweep.run.rllib_check import check_study\n"
        "study = parse_study({'name': 'x', 'algorithm': 'PPO', 'env': 'CartPole-v1',"
        " 'rllib': {'minibatch_sise': 64}, 'factors': {'replay_capacity': [0]}}, 'x')\n"
        "try:\n"
        "    check_study(study, 'x.yaml')\n"
        "except SpecError as exc:\n"
        "    print(exc)\n"
        "assert 'ray.rllib' not in sys.modules\n"
    )
    assert in_fresh_python(code).strip() == (
        "x.yaml: rllib.minibatch_sise: PPOConfig has no attribute 'minibatch_sise'; "
        "nearest: minibatch_size, sgd_minibatch_size, train_batch_size"
    )


def test_tunes_tensorboard_logger_does_not_bring_torch_into_the_driver() -> None:
    # GIVEN a fresh process that prepares the driver as run_study does
    code = (
        "import sys\n"
        "from memsweep.run.workarounds.tune import tensorboard_logger_without_torch\n"
        "tensorboard_logger_without_torch()\n"
        "from ray.tune.logger import TBXLoggerCallback\n"
        "TBXLoggerCallback()\n"
        "assert 'torch' not in sys.modules, 'the TensorBoard logger imported torch'\n"
        "import torch\n"
        "print(torch.tensor([2]).sum().item())\n"
    )
    printed = in_fresh_python(code)
    # THEN Tune's logger is built without torch, and torch still imports afterwards
    assert printed.strip() == "2"


def test_tunes_callback_telemetry_does_not_bring_mlflow_into_the_driver() -> None:
    # GIVEN mlflow installed (memsweep's [dev] extra has it) and a fresh process that
    # prepares the driver as run_study does
    code = (
        "import importlib.util, sys\n"
        "assert importlib.util.find_spec('mlflow') is not None, 'mlflow is not installed'\n"
        "from memsweep.run.workarounds.tune import "
        "tracker_integrations_without_their_libraries\n"
        "tracker_integrations_without_their_libraries()\n"
        "from ray.air._internal.usage import tag_callbacks\n"
        "from ray.tune import Callback\n"
        "tag_callbacks([Callback()])  # what tune.run does with memsweep's callback\n"
        "assert 'mlflow' not in sys.modules, 'Tune\\'s telemetry imported mlflow'\n"
        "import mlflow\n"
        "print(mlflow.__name__)\n"
    )
    # WHEN Tune records its callbacks, THEN mlflow stays out, and still imports afterwards
    assert in_fresh_python(code).strip() == "mlflow"


def test_without_the_workaround_tunes_callback_telemetry_imports_mlflow() -> None:
    # The Ray behaviour worked around: once this fails (Ray no longer imports the tracker
    # libraries for its telemetry), tracker_integrations_without_their_libraries can go.
    code = (
        "import sys\n"
        "from ray.air._internal.usage import tag_callbacks\n"
        "from ray.tune import Callback\n"
        "tag_callbacks([Callback()])\n"
        "print('mlflow' in sys.modules)\n"
    )
    assert in_fresh_python(code).strip() == "True"


TRIAL_STATE_GROWTH = """
import random, sys, tracemalloc
from ray.tune.trainable.metadata import _TrainingRunMetadata
from ray.util import debug
if sys.argv[1] == "worked-around":
    from memsweep.run.workarounds.tune import trial_state_encoding_that_does_not_grow
    trial_state_encoding_that_does_not_grow()
    trial_state_encoding_that_does_not_grow()  # idempotent
metadata = _TrainingRunMetadata()
tracemalloc.start()
before, kept = len(debug._logged), tracemalloc.get_traced_memory()[0]
for result in range(120):
    for metric in range(170):
        metadata.update_metric(f"metric_{metric}", random.random(), step=result + 1)
    metadata.get_json_state()  # what Tune saves after every result
print(len(debug._logged) - before, tracemalloc.get_traced_memory()[0] - kept)
"""


@pytest.mark.parametrize("driver", ["upstream", "worked-around"])
def test_tunes_trial_state_encoder_grows_the_driver_by_every_number_unless_worked_around(
    driver: str,
) -> None:
    # GIVEN Tune's per-trial metadata as a trial of ~170 numeric metrics (RLlib's result)
    # reports 120 results, its JSON state encoded after each, as Tune saves it
    code = f"import sys; sys.argv = ['', {driver!r}]\n" + TRIAL_STATE_GROWTH
    new_keys, grown = (int(word) for word in in_fresh_python(code).split())
    if driver == "upstream":
        # THEN upstream, log_once keeps two new strings per metric per result: the leak
        # trial_state_encoding_that_does_not_grow works around (it can go once this fails)
        assert new_keys == 120 * 170 * 2
        assert grown > 8_000_000
    else:
        # THEN worked around: one key, and the traced memory is Tune's bounded metadata
        assert new_keys <= 1
        assert grown < 1_500_000

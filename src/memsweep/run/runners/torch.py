"""Env-runner classes for torch trials: RLlib in these processes never imports TensorFlow.

RLlib imports TensorFlow in every process where it is installed, unless
``RLLIB_TEST_NO_TF_IMPORT`` is in that process's environment when ``ray.rllib`` is
first imported; TensorFlow then costs a torch trial about 500 MB of RSS per process
that a torch-only install would not. Env-runner actors are processes Ray starts from
its worker pool, not children of the trainable, so the trainable's ``os.environ`` does
not reach them. Ray loads an actor's class before it deserialises the constructor
arguments (the ``AlgorithmConfig``, which imports RLlib), so this module, imported to
unpickle the class, is the first code to run in the process and sets the variable
before RLlib is imported. ``tests/test_workloads.py`` checks that this holds. See
:mod:`memsweep.run.trainable`.
"""

from __future__ import annotations

import logging
import os

os.environ["RLLIB_TEST_NO_TF_IMPORT"] = "1"
# RLlib logs "Not importing TensorFlow for test purposes" on every try_import_tf call.
logging.getLogger("ray.rllib.utils.framework").setLevel(logging.ERROR)

from ray.rllib.env.multi_agent_env_runner import MultiAgentEnvRunner  # noqa: E402
from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner  # noqa: E402
from ray.rllib.evaluation.rollout_worker import RolloutWorker  # noqa: E402


class TorchEnvRunner(SingleAgentEnvRunner):
    """RLlib's new-stack ``SingleAgentEnvRunner``, in a process without TensorFlow."""


class TorchMultiAgentEnvRunner(MultiAgentEnvRunner):
    """RLlib's new-stack ``MultiAgentEnvRunner`` (``env.multi_agent``), without TensorFlow."""


class TorchRolloutWorker(RolloutWorker):
    """RLlib's old-stack ``RolloutWorker``, in a process without TensorFlow."""

"""The Tune trainable: one memsweep trial = one RLlib algorithm, built from its point.

**TensorFlow imports (decision).** When TensorFlow is installed, RLlib imports it in
every process that imports ``ray.rllib`` (``try_import_tf`` at module level all over
RLlib), even in torch trials, unless ``RLLIB_TEST_NO_TF_IMPORT`` is in that process's
environment at that moment. TensorFlow costs about 500 MB of RSS per process (RLlib's
DQN plus torch imported: 937 MB with it, 419 MB without, on Ray 2.60 / TF 2.21), which
would bias exactly what memsweep measures in torch trials. So the framework decides,
per process, before RLlib is imported:

- the trainable (the algorithm's main process, where the local env runner and, on the
  new stack, the local learner live): :meth:`MemsweepTrainable.setup` calls
  :func:`prepare_process_for` — set the variable for torch, remove it for TensorFlow —
  before its first RLlib import. Neither this module nor :mod:`memsweep.run.workloads`
  imports RLlib at import time, and ``ray.tune`` does not either, so unpickling this
  class in a fresh Ray worker leaves the decision open.
- the remote env runners, which are not children of the trainable but processes Ray
  starts from its worker pool with the job's environment: the trial sets
  ``config.env_runners(env_runner_cls=...)`` to a subclass from
  :mod:`memsweep.run.runners.torch` or :mod:`memsweep.run.runners.tf`, modules that set or
  remove the variable at their top before importing RLlib. Ray loads the actor class
  before deserialising its constructor arguments (the ``AlgorithmConfig``), so that
  module's top is the first code to run. ``tests/test_workloads.py`` proves the result
  (``"tensorflow" in sys.modules`` in each process of a torch and a tf2 trial).

What this does not cover: processes RLlib starts that are neither (remote learners,
aggregator actors, evaluation runners): memsweep configures none of them. Tune must not
reuse a trial's actor for another trial (:meth:`MemsweepTrainable.reset_config` says no),
since TensorFlow, once imported, stays.

**Results.** Every ``step()`` result is RLlib's ``train()`` result plus
``memsweep/env_steps``, ``memsweep/replay_size``, the :class:`~memsweep.run.workloads.BuiltFacts`
as ``memsweep/built_*``, and ``memory/rss_bytes`` and ``memory/peak_bytes``: VmRSS and
VmHWM summed over the trainable and its remote env runners, each read in its own process
so that it works across nodes; ``memory/projected_peak_bytes`` extends the peak's
trajectory to a full buffer (:mod:`memsweep.run.projection`), for the budget search. The peak is a sum of per-process peaks, an upper bound
on the trial's simultaneous peak; memsweep's sampler has the time series.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ray import tune

from memsweep import result_keys as keys
from memsweep.errors import SpecError
from memsweep.spec import Framework, Study, TrialPoint, point_from_config

if TYPE_CHECKING:
    from ray.rllib.algorithms.algorithm import Algorithm
    from ray.tune import PlacementGroupFactory

    from memsweep.run.projection import TrajectoryPoint
    from memsweep.run.workloads import ApiStack, BuiltFacts

log = logging.getLogger(__name__)

PROJECTED_PEAK_KEY = keys.PROJECTED_PEAK_BYTES
"""Result key: the trial's peak once its buffer is full, projected from its trajectory
(the peak itself for a trial without a buffer, or once it is full)."""

NO_TF_IMPORT_VAR = "RLLIB_TEST_NO_TF_IMPORT"
"""Environment variable that stops RLlib from importing TensorFlow in a process."""


def study_from_config(config: Mapping[str, Any]) -> Study:
    """The study a trial's Tune config carries under ``"study"`` (JSON form or object)."""
    if "study" not in config:
        raise SpecError("a memsweep trial config needs a 'study' entry (study.model_dump())")
    value = config["study"]
    return value if isinstance(value, Study) else Study.model_validate(value)


def prepare_process_for(framework: Framework) -> None:
    """Decide, before RLlib's first import in this process, whether it imports TensorFlow.

    Torch: set ``RLLIB_TEST_NO_TF_IMPORT``. TensorFlow: remove it and select tf-keras
    (``TF_USE_LEGACY_KERAS=1``; RLlib's TF models break under Keras 3). Too late once
    ``ray.rllib`` is imported: then it only logs a warning.
    """
    if framework == "torch":
        os.environ[NO_TF_IMPORT_VAR] = "1"
        # RLlib logs "Not importing TensorFlow for test purposes" on every lookup.
        logging.getLogger("ray.rllib.utils.framework").setLevel(logging.ERROR)
    else:
        os.environ.pop(NO_TF_IMPORT_VAR, None)
        os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    if "ray.rllib" in sys.modules and (framework == "torch") == ("tensorflow" in sys.modules):
        log.warning(
            "RLlib was imported in process %d before the %s trial chose its TensorFlow "
            "import; this process's memory includes TensorFlow = %s",
            os.getpid(),
            framework,
            "tensorflow" in sys.modules,
        )


def env_runner_class(stack: ApiStack, framework: Framework, multi_agent: bool = False) -> type[Any]:
    """The env-runner class whose module makes its process import TensorFlow or not
    (a multi-agent one for ``env.multi_agent`` on the new stack)."""
    if framework == "torch":
        from memsweep.run.runners import torch as runners_torch

        if stack == "new":
            return (
                runners_torch.TorchMultiAgentEnvRunner
                if multi_agent
                else runners_torch.TorchEnvRunner
            )
        return runners_torch.TorchRolloutWorker
    from memsweep.run.runners import tf as runners_tf

    return runners_tf.TFRolloutWorker


def _register_trial(trial_id: str) -> None:
    """Tell memsweep's sampler which trial this process belongs to (no-op outside a sweep)."""
    from memsweep.collect.sampler import register_trial

    register_trial(trial_id)


class MemsweepTrainable(tune.Trainable):
    """One trial: builds the RLlib algorithm for its point and trains it step by step.

    Tune config: ``{"study": study.model_dump(mode="json"), "point":
    point.model_dump(mode="json")}`` (grid mode) or ``"study"`` plus the flat keys of
    :func:`memsweep.spec.point_from_config` (random/Optuna modes).
    """

    study: Study
    point: TrialPoint
    algo: Algorithm
    facts: BuiltFacts
    trajectory: list[TrajectoryPoint]
    """(transitions stored, peak) at every result so far: the projection's input."""

    @classmethod
    def default_resource_request(cls, config: dict[str, Any]) -> PlacementGroupFactory:
        """The algorithm's own placement group: one bundle for this process, one per
        remote env runner. Tune creates the trial's actor in it and captures child
        actors, so the env runners RLlib starts land in the same placement group (which
        is how memsweep attributes processes to trials)."""
        from memsweep.run.workloads import algorithm_class, build_config

        study = study_from_config(config)
        point = point_from_config(study, config)
        algo_config = build_config(study, point)
        request = algorithm_class(study, point).default_resource_request(algo_config)
        if not isinstance(request, tune.PlacementGroupFactory):  # Old-style Resources.
            raise TypeError(f"expected a PlacementGroupFactory from RLlib, got {request!r}")
        return request

    def setup(self, config: dict[str, Any]) -> None:
        _register_trial(self.trial_id)
        self.study = study_from_config(config)
        self.point = point_from_config(self.study, config)
        prepare_process_for(self.point.framework)

        from memsweep.run.workloads import build_config, built_facts

        algo_config = build_config(self.study, self.point)
        algo_config.env_runners(
            env_runner_cls=env_runner_class(
                self.point.api_stack(self.study),
                self.point.framework,
                multi_agent=self.study.env.multi_agent is not None,
            )
        )
        self.algo = algo_config.build_algo()
        self.facts = built_facts(self.algo)
        self.trajectory = []

    def step(self) -> dict[str, Any]:
        from ray.tune.result import AUTO_RESULT_KEYS, DONE

        from memsweep.run.workloads import RESULT_PREFIX, env_steps, replay_size

        result: dict[str, Any] = self.algo.train()  # type: ignore[no-untyped-call]
        steps = env_steps(result)
        # The algorithm is a Trainable too; its bookkeeping keys would shadow this one's.
        for key in (*AUTO_RESULT_KEYS, DONE, "trial_id"):
            result.pop(key, None)
        result[f"{RESULT_PREFIX}env_steps"] = steps
        result[f"{RESULT_PREFIX}replay_size"] = replay_size(self.algo)
        result.update(self.facts.as_result())
        result.update(self.memory_summary())
        result[PROJECTED_PEAK_KEY] = self.project_peak(
            result[f"{RESULT_PREFIX}replay_size"], result[keys.PEAK_BYTES]
        )
        return result

    def project_peak(self, replay_size: int | None, peak_bytes: int) -> int:
        """The peak once the buffer is full, from this trial's trajectory so far
        (:func:`memsweep.run.projection.projected_peak`); the peak itself without a buffer."""
        from memsweep.run.projection import TrajectoryPoint, projected_peak

        capacity = self.facts.replay_capacity
        if not capacity:
            return peak_bytes
        self.trajectory.append(TrajectoryPoint(int(replay_size or 0), peak_bytes))
        return projected_peak(self.trajectory, capacity)

    def memory_summary(self) -> dict[str, int]:
        """``memory/rss_bytes`` and ``memory/peak_bytes`` of this trial's processes now."""
        from memsweep.collect.probe import read_status
        from memsweep.run.workloads import env_runner_group

        # The lambda ships by value; read_status by reference (memsweep.collect.probe imports
        # only psutil into the env runner).
        statuses = [read_status(os.getpid())]
        statuses += env_runner_group(self.algo).foreach_env_runner(
            lambda runner: read_status(os.getpid()), local_env_runner=False
        )
        found = [status for status in statuses if status is not None]
        rss = sum(status.rss_bytes for status in found)
        peak = sum(status.hwm_bytes for status in found)
        # The MiB twins are for Tune's progress table; the analysis uses the bytes.
        return {
            keys.RSS_BYTES: rss,
            keys.PEAK_BYTES: peak,
            keys.RSS_MB: rss // 2**20,
            keys.PEAK_MB: peak // 2**20,
        }

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        """The algorithm's own checkpoint: ``save_to_path`` on the new stack, its pickled
        state on the old one (where ``save_to_path`` raises); Tune stores the folder."""
        self.algo.save_checkpoint(checkpoint_dir)

    def load_checkpoint(self, checkpoint: str | dict[str, Any] | None) -> None:
        """Restore what :meth:`save_checkpoint` wrote (Tune passes the folder back)."""
        if not isinstance(checkpoint, str):
            raise TypeError(f"expected a checkpoint directory, got {type(checkpoint).__name__}")
        self.algo.load_checkpoint(checkpoint)

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        """Never reuse this actor for another trial: its imports and heap would carry over."""
        return False

    def cleanup(self) -> None:
        from memsweep.run.workloads import stop_algorithm

        algo = getattr(self, "algo", None)
        if algo is not None:
            stop_algorithm(algo)

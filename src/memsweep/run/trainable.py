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
``memsweep/env_steps``, ``memsweep/replay_size``, ``memsweep/plateau_env_steps`` (env
steps since the buffer first held its capacity, or since the first result without a
buffer: what ``stop.plateau_env_steps`` stops on), the
:class:`~memsweep.run.workloads.BuiltFacts` as ``memsweep/built_*``, and the trial's
memory, each figure read in its own process so that it works across nodes:
``memory/rss_bytes`` and ``memory/pss_bytes`` (Σ over the trainable and its remote env
runners now), ``memory/peak_bytes`` (the largest Σ PSS at any result so far: the one
definition of a peak, :mod:`memsweep.store.peaks`, sampled at results) and
``memory/hwm_bytes`` (Σ VmHWM: spikes between results, shared pages once per process).
``memory/projected_peak_bytes`` extends the peak's trajectory to a full buffer
(:mod:`memsweep.run.projection`), for the budget search.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ray import tune

from memsweep import result_keys as keys
from memsweep.errors import SpecError
from memsweep.run.envs import ShippedCode, install_shipped, ship_file_entry_points
from memsweep.spec import Framework, Study, TrialPoint, point_from_config
from memsweep.spec.plateau import time_cap_s
from memsweep.units import MB

if TYPE_CHECKING:
    from ray.rllib.algorithms.algorithm import Algorithm
    from ray.tune import PlacementGroupFactory

    from memsweep.run.built import BuiltFacts
    from memsweep.run.projection import TrajectoryPoint
    from memsweep.run.workloads import ApiStack

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


def trainable_for(study: Study) -> type[tune.Trainable]:
    """The trainable a sweep of ``study`` runs: :class:`MemsweepTrainable`, given the
    source of the sweep file's own code (``tune.with_parameters``, through Ray's object
    store) when the study names a file entry point; reads those files here, in the
    driver, without running them."""
    shipped = ship_file_entry_points((study.env.id, study.config))
    if not shipped.sources:
        return MemsweepTrainable
    wrapped: type[tune.Trainable] = tune.with_parameters(MemsweepTrainable, shipped=shipped)
    # Ray names an actor by its class's __qualname__ (here "with_parameters.<locals>._Inner"),
    # and memsweep's attribution knows a trainable by that name.
    wrapped.__qualname__ = MemsweepTrainable.__qualname__
    return wrapped


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
    peak_bytes: int
    """The largest Σ PSS of the trial's processes at any result so far."""
    plateau_from_env_steps: int | None
    """Env steps at the result where the plateau began (buffer full); None before."""
    time_cap_s: float | None
    """The guard on training time derived from the trial's estimate (None: no guard of
    the trainable's own; ``stop.seconds`` is Tune's)."""
    training_since: float
    """``time.monotonic()`` when set-up ended."""

    @classmethod
    def default_resource_request(cls, config: dict[str, Any]) -> PlacementGroupFactory:
        """The algorithm's own placement group: one bundle for this process, one per
        remote env runner (and RLlib's other actors, if configured). Tune creates the
        trial's actor in it and captures child actors, so the env runners RLlib starts
        land in the same placement group (which is how memsweep attributes processes to
        trials). Tune calls this in the driver: it is computed from the spec by RLlib's
        rules (:mod:`memsweep.run.placement`), without importing RLlib here."""
        from memsweep.run.placement import placement_group_factory, trial_resources
        from memsweep.run.rllib_check import base_resources

        study = study_from_config(config)
        point = point_from_config(study, config)
        return placement_group_factory(trial_resources(study, point, base_resources(study)))

    def setup(self, config: dict[str, Any], shipped: ShippedCode | None = None) -> None:
        """Build the algorithm. ``shipped``: the source of the sweep file's own code (a
        file env or ``config:`` function), read in the driver and given through
        ``tune.with_parameters`` (:func:`trainable_for`): this process may be on a node
        without the file, so it never reads the driver's path."""
        _register_trial(self.trial_id)
        self.study = study_from_config(config)
        self.point = point_from_config(self.study, config)
        prepare_process_for(self.point.framework)
        install_shipped(shipped)  # Executed on first use: after the TensorFlow decision.

        from memsweep.run.built import built_facts
        from memsweep.run.workloads import build_config

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
        self.peak_bytes = 0
        self.plateau_from_env_steps = None
        self.time_cap_s = (
            time_cap_s(self.study, self.point) if self.study.stop.seconds is None else None
        )
        self.training_since = time.monotonic()
        from memsweep.run import profile

        # Only under memsweep diagnose: track what training allocates and keeps.
        profile.start_in(self.algo)

    def step(self) -> dict[str, Any]:
        from ray.tune.result import AUTO_RESULT_KEYS, DONE

        from memsweep.run.built import RESULT_PREFIX, env_steps, replay_size

        result: dict[str, Any] = self.algo.train()  # type: ignore[no-untyped-call]
        steps = env_steps(result)
        # The algorithm is a Trainable too; its bookkeeping keys would shadow this one's.
        for key in (*AUTO_RESULT_KEYS, DONE, "trial_id"):
            result.pop(key, None)
        stored = replay_size(self.algo)
        result[f"{RESULT_PREFIX}env_steps"] = steps
        result[f"{RESULT_PREFIX}replay_size"] = stored
        result[keys.PLATEAU_ENV_STEPS] = self.plateau_env_steps(steps, stored)
        trained_s = time.monotonic() - self.training_since
        result[keys.TIME_CAPPED] = int(self.time_cap_s is not None and trained_s >= self.time_cap_s)
        result.update(self.facts.as_result())
        result.update(self.memory_summary())
        result[PROJECTED_PEAK_KEY] = self.project_peak(
            result[f"{RESULT_PREFIX}replay_size"], result[keys.PEAK_BYTES]
        )
        return result

    def plateau_env_steps(self, steps: int, stored: int | None) -> int:
        """Env steps since the plateau began: since the first result at which the buffer
        had been filled (as many env steps sampled as it holds: every sampled transition
        is stored once, and RLlib's new-stack episode buffer evicts whole episodes, so
        its count settles just under the capacity rather than on it), or, without a
        buffer, since the first result; 0 before."""
        capacity = self.facts.replay_capacity
        if self.plateau_from_env_steps is None and (
            not capacity or (stored is not None and stored > 0 and steps >= capacity)
        ):
            self.plateau_from_env_steps = steps
        if self.plateau_from_env_steps is None:
            return 0
        return steps - self.plateau_from_env_steps

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
        """Σ RSS, Σ PSS, the peak (largest Σ PSS so far) and Σ VmHWM of this trial's
        processes: the trainable and its remote env runners, each read in its process."""
        from memsweep.collect.probe import read_peak_inputs
        from memsweep.run.built import env_runner_group

        # The lambda ships by value; read_peak_inputs by reference (memsweep.collect.probe
        # imports only psutil into the env runner).
        readings = [read_peak_inputs(os.getpid())]
        readings += env_runner_group(self.algo).foreach_env_runner(
            lambda runner: read_peak_inputs(os.getpid()), local_env_runner=False
        )
        found = [reading for reading in readings if reading is not None]
        rss = sum(reading.rss_bytes for reading in found)
        pss = sum(reading.pss_bytes for reading in found)
        self.peak_bytes = max(self.peak_bytes, pss)
        # The MB twins (10⁶ bytes) are for Tune's progress table; the analysis uses bytes.
        return {
            keys.RSS_BYTES: rss,
            keys.PSS_BYTES: pss,
            keys.PEAK_BYTES: self.peak_bytes,
            keys.HWM_BYTES: sum(reading.hwm_bytes for reading in found),
            keys.PSS_MB: round(pss / MB),
            keys.PEAK_MB: round(self.peak_bytes / MB),
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
        from memsweep.run import profile
        from memsweep.run.built import stop_algorithm

        algo = getattr(self, "algo", None)
        # Only under memsweep diagnose: close the env runners' captures while they live,
        # the trainable's own once the algorithm has released what it frees at its stop.
        profile.stop_in(algo)
        if algo is not None:
            stop_algorithm(algo)
        profile.stop()

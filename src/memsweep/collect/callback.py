"""The Tune callback: thin hooks that hand work to a :class:`~memsweep.collect.recorder.SweepRecorder`.

Add it to any ``Tuner``; no sweep file is needed::

    import memsweep
    from ray import tune

    tuner = tune.Tuner(
        "PPO",
        param_space=config,
        run_config=tune.RunConfig(callbacks=[memsweep.MemoryCallback("results/my-run")]),
    )
    with memsweep.survive_oom_kills():
        tuner.fit()

Hooks run inside Tune's control loop, where slow work stalls every trial; so each hook
only turns Tune's trial into a :class:`~memsweep.collect.tune_results.TuneTrial` and hands
it on. The recorder keeps the trials table; sampling happens in the per-node sampler
actors, draining, attribution and writing on the collector thread.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ray.tune import Callback

from memsweep.collect.faults import MemoryBudget
from memsweep.collect.recorder import SweepRecorder
from memsweep.collect.tune_results import Describe, StudyTrials, TuneTrial
from memsweep.result_keys import TuneResult, TuneState
from memsweep.spec import SamplingSpec, Study

# StudyTrials stays importable here: Tune pickles a callback's ``describe`` by this path
# into a sweep's experiment state, and Tuner.restore unpickles it.
__all__ = ["MemoryCallback", "StudyTrials"]


class MemoryCallback(Callback):
    """Samples every process of every trial on every node into a results folder.

    ``results``: a local path or ``pyarrow.fs`` URI (``s3://bucket/prefix``); the folder
    layout is :mod:`memsweep.store.schema`'s, so ``memsweep analyze RESULTS`` reads it.
    ``sampling``: how often (default 10 Hz RSS, 1 Hz PSS/USS, a Parquet part every 2 s).
    ``memory_budget``: stop a trial (``over_budget``) past it. Each result gains
    ``memory/rss_bytes`` and ``memory/peak_bytes`` (:mod:`memsweep.result_keys`) unless
    the trainable reports them itself. ``get_state``/``set_state`` carry the trials
    table, so a run resumed with ``Tuner.restore`` keeps appending to the same folder.
    """

    def __init__(
        self,
        results: str | os.PathLike[str],
        sampling: SamplingSpec | None = None,
        memory_budget: MemoryBudget | None = None,
        describe: Describe | None = None,
        study_name: str | None = None,
    ) -> None:
        self.results = str(results)
        self.sampling = sampling or SamplingSpec()
        self.budget = memory_budget
        self.describe = describe
        self.study_name = study_name or Path(self.results.rstrip("/")).name
        self.recorder = SweepRecorder(
            self.results, self.sampling, self.budget, self.describe, self.study_name
        )

    @classmethod
    def for_study(cls, study: Study, results: str | os.PathLike[str]) -> MemoryCallback:
        """The callback of ``memsweep run``: sampling, budget and trial facts from the study."""
        resources = study.resources
        budget = (
            MemoryBudget(resources.memory_budget, resources.budget_scope)
            if resources.memory_budget is not None
            else None
        )
        return cls(results, study.sampling, budget, StudyTrials(study), study.name)

    @property
    def collector_error(self) -> BaseException | None:
        """Why samples stopped being written (a full or vanished results folder), if so."""
        return self.recorder.collector_error

    def __reduce__(self) -> tuple[Any, ...]:
        # Tune pickles its RunConfig into the experiment folder: the settings, not the
        # writer's open handles.
        args = (self.results, self.sampling, self.budget, self.describe, self.study_name)
        return (type(self), args)

    def setup(
        self,
        stop: Any = None,
        num_samples: int | None = None,
        total_num_samples: int | None = None,
        **info: Any,
    ) -> None:
        self.recorder.start()

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.recorder.trial_started(TuneTrial.of(trial))

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: TuneResult, **info: Any
    ) -> None:
        self.recorder.trial_result(trial.trial_id, result)

    def on_step_begin(self, iteration: int, trials: list[Any], **info: Any) -> None:
        """Stop the trials the collector found over the memory budget."""
        self.recorder.stop_breaches()

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.recorder.trial_completed(TuneTrial.of(trial))

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.recorder.trial_failed(TuneTrial.of(trial))

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        self.close()

    def get_state(self) -> TuneState | None:
        return self.recorder.get_state()

    def set_state(self, state: TuneState) -> None:
        self.recorder.set_state(state)

    def close(self) -> None:
        """Final drain and write; safe to call twice."""
        self.recorder.close()

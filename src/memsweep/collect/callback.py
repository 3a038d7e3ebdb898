"""The Tune callback: thin hooks that hand work to the :class:`~memsweep.collect.collector.Collector`.

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
only records what Tune tells it (a trial started, a result, an end) in the
:class:`~memsweep.collect.trials.TrialsTable` and returns. Sampling happens in the
per-node sampler actors, draining, attribution and writing on the collector thread.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray.tune import Callback

from memsweep import result_keys as keys
from memsweep.collect.cluster import driver_identity
from memsweep.collect.collector import Collector
from memsweep.collect.faults import OVER_BUDGET, MemoryBudget, read_trial_error
from memsweep.collect.sampler import SamplerConfig
from memsweep.collect.trials import TrialsTable, now_us
from memsweep.errors import MemsweepError
from memsweep.spec import SamplingSpec, Study, point_from_config
from memsweep.store import ResultsWriter

ENV_STEP_KEYS = (
    keys.ENV_STEPS,
    "env_runners/num_env_steps_sampled_lifetime",
    "num_env_steps_sampled_lifetime",
    "num_env_steps_sampled",
    "timesteps_total",
)
"""Where a result's env steps are looked for, first found wins: memsweep's trainable,
RLlib's new API stack, its old one, Tune's generic counter."""

REPLAY_SIZE_KEYS = (keys.REPLAY_SIZE, "replay_size", "replay_buffer/size")
"""Where a result's replay-buffer fill (transitions) is looked for."""

Describe = Callable[[Mapping[str, Any]], dict[str, Any] | None]
"""A trial's config → its trials-table columns (memsweep's own sweeps), or None."""


@dataclass(frozen=True)
class StudyTrials:
    """A memsweep trainable's config → its study and factor columns; None for another
    trainable's (sampled and attributed all the same)."""

    study: Study

    def __call__(self, config: Mapping[str, Any]) -> dict[str, Any] | None:
        study = self.study
        try:
            point = point_from_config(study, config)
        except (KeyError, TypeError, ValueError, MemsweepError):
            return None
        return {
            "algorithm": study.algorithm,
            "env": study.env.label,
            "api_stack": point.api_stack(study),
            **point.as_row(study.config_label),  # factors_json included
            "cpus_per_trainable": study.resources.cpus_per_trainable,
            "cpus_per_env_runner": study.resources.cpus_per_env_runner,
        }


def _lookup(result: Mapping[str, Any], names: tuple[str, ...]) -> Any:
    for name in names:
        value: Any = result.get(name)
        if value is None and "/" in name:
            value = result
            for part in name.split("/"):
                value = value.get(part) if isinstance(value, Mapping) else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return int(value)
    return None


def _error_text(trial: Any, limit: int = 200_000) -> str:
    """The end of the trial's error file (whole enough for Ray's OOM report)."""
    path = getattr(trial, "error_file", None) or getattr(
        getattr(trial, "run_metadata", None), "error_filename", None
    )
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")[-limit:] if path else ""
    except OSError:
        return ""


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
        self.writer = ResultsWriter(self.results)
        self.sampling = sampling or SamplingSpec()
        self.budget = memory_budget
        self.describe = describe
        self.study_name = study_name or Path(self.results.rstrip("/")).name
        self.trials = TrialsTable()
        self._collector: Collector | None = None
        self._actors: dict[str, Any] = {}
        self._budget_stops: dict[str, Any] = {}
        self._restored_groups: dict[str, str] = {}
        self._collector_error: BaseException | None = None
        self._last_result: dict[str, dict[str, Any]] = {}

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
        """Why samples stopped being written (a full or vanished results folder), if so;
        kept after :meth:`close`."""
        return self._collector.error if self._collector else self._collector_error

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
        driver_pid, driver_node = driver_identity()
        config = SamplerConfig(
            interval_s=self.sampling.interval_s,
            full_interval_s=self.sampling.full_interval_s,
            driver_pid=driver_pid,
            driver_node_id=driver_node,
        )
        self._collector = Collector(
            self.writer, config, self.sampling.flush_interval_s, self.trials, self.budget
        )
        for group, trial_id in self._restored_groups.items():
            self._collector.map_group(group, trial_id)
        self._collector.start()

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        described = self.describe(trial.config) if self.describe else None
        if described is None:
            self.trials.set_config(trial.trial_id, trial.config)
        # A resumed trial starts over: its latest attempt is the one that counts.
        self.trials.update(
            trial.trial_id,
            study=self.study_name,
            **(described or {}),
            status="running",
            run_id=self.writer.run_id,
            started_at=now_us(),
        )
        actor = getattr(getattr(trial, "temporary_state", None), "ray_actor", None)
        if self._collector is not None and actor is not None:
            # Any trainable, memsweep's or not: its actor's placement group is the trial's.
            self._collector.map_actor(actor._actor_id.hex(), trial.trial_id)
            self._actors[trial.trial_id] = actor
            self._collector.add_event("trial_started", trial_id=trial.trial_id)

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        memory = self._collector.trial_memory(trial.trial_id) if self._collector else None
        for key, value in (memory.as_result() if memory else {}).items():
            result.setdefault(key, value)  # Tune lets callbacks add to a result in place.
        peak = _lookup(result, (keys.PEAK_BYTES,))
        progress = {
            "ts": now_us(),
            "trial_id": trial.trial_id,
            "run_id": self.writer.run_id,
            "iteration": result.get("training_iteration"),
            "env_steps": _lookup(result, ENV_STEP_KEYS),
            "replay_size": _lookup(result, REPLAY_SIZE_KEYS),
            "time_total_s": result.get("time_total_s"),
            "trial_rss_bytes": _lookup(result, (keys.RSS_BYTES,)),
            "trial_peak_bytes": peak,
        }
        if self._collector is not None:
            self._collector.add_progress(progress)
        row = self.trials.get(trial.trial_id)
        built = {name: _lookup(result, (key,)) for name, key in keys.BUILT_KEYS.items()}
        # What the stop rule looks at, to name the limit that ended the trial.
        self._last_result[trial.trial_id] = {key: result.get(key) for key in self._stop_limits()}
        hwm = _lookup(result, (keys.HWM_BYTES,))
        self.trials.update(
            trial.trial_id,
            iterations=progress["iteration"],
            env_steps=progress["env_steps"],
            peak_bytes=max(peak or 0, row.peak_bytes or 0) or None,
            hwm_bytes=hwm if hwm is not None else row.hwm_bytes,
            **{name: value for name, value in built.items() if value is not None},
        )

    def on_step_begin(self, iteration: int, trials: list[Any], **info: Any) -> None:
        """Stop the trials the collector found over the memory budget."""
        import ray

        for breach in self._collector.take_breaches() if self._collector else []:
            actor = self._actors.get(breach.trial_id)
            if actor is None:
                continue  # Already ended.
            self._budget_stops[breach.trial_id] = breach
            self.trials.update(
                breach.trial_id, memory_budget_bytes=self.budget and self.budget.limit_bytes
            )
            try:
                ray.kill(actor, no_restart=True)  # Its env runners go with it.
            except Exception as exc:
                raise MemsweepError(
                    f"could not stop trial {breach.trial_id} over budget: {exc}"
                ) from exc

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        last = self._last_result.pop(trial.trial_id, {})
        stop = self.describe.study.stop if isinstance(self.describe, StudyTrials) else None
        self._end(trial, keys.TERMINATED, None, stop_reason=stop.reason(last) if stop else None)

    def _stop_limits(self) -> dict[str, float]:
        """A memsweep study's stop limits (result key → limit); none for another Tuner."""
        return self.describe.study.stop.limits() if isinstance(self.describe, StudyTrials) else {}

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        breach = self._budget_stops.pop(trial.trial_id, None)
        if breach is not None:
            self._end(
                trial, OVER_BUDGET, breach.detail, budget_measured_bytes=breach.measured_bytes
            )
            return
        text = _error_text(trial)
        kill = read_trial_error(text)
        used, limit = kill.node_used_bytes, kill.node_limit_bytes
        lines = [line for line in text.splitlines() if line.strip()]
        self._end(
            trial,
            kill.status,
            kill.summary or "\n".join(lines[-3:])[:2000] or "trial failed (no error file)",
            killed_pid=kill.killed_pids[0] if kill.killed_pids else None,
            killed_node_id=kill.node_id,
            kill_node_used_bytes=used,
            kill_node_available_bytes=None if used is None or limit is None else limit - used,
        )
        if kill.killed_pids and self._collector is not None:
            self._collector.report_kill(trial.trial_id, kill)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        self.close()

    def get_state(self) -> dict[str, Any] | None:
        groups = self._collector.trial_of_group if self._collector else {}
        return {"trials": self.trials.get_state(), "groups": groups}

    def set_state(self, state: dict[str, Any]) -> None:
        self.trials.set_state(state.get("trials", {}))
        self._restored_groups = dict(state.get("groups", {}))
        for group, trial_id in self._restored_groups.items():
            if self._collector is not None:
                self._collector.map_group(group, trial_id)

    def _end(self, trial: Any, status: str, error: str | None, **facts: Any) -> None:
        row = self.trials.get(trial.trial_id)
        if row.study is None:
            # Killed before Tune reported its start (e.g. in set-up): still name it.
            self.on_trial_start(0, [], trial)
        self.trials.update(trial.trial_id, status=status, error=error, ended_at=now_us(), **facts)
        self._actors.pop(trial.trial_id, None)
        if self._collector is not None:
            self._collector.add_event("trial_ended", trial_id=trial.trial_id, detail=status)

    def close(self) -> None:
        """Final drain and write; safe to call twice."""
        if self._collector is not None:
            collector, self._collector = self._collector, None
            for group, trial_id in self._restored_groups.items():
                collector.map_group(group, trial_id)
            collector.stop()
            self._collector_error = collector.error

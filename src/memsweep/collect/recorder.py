"""Everything the Tune callback does, without Tune: one sweep's trials table, collector
and memory-budget stops.

:class:`~memsweep.collect.callback.MemoryCallback`'s hooks turn Tune's objects into
:class:`~memsweep.collect.tune_results.TuneTrial` and hand them to a
:class:`SweepRecorder`. Each method only records and returns; sampling, attribution and
writing run on the collector thread.
"""

from __future__ import annotations

from typing import Any

from memsweep import result_keys as keys
from memsweep.collect.cluster import driver_identity
from memsweep.collect.collector import Collector
from memsweep.collect.faults import OVER_BUDGET, BudgetBreach, MemoryBudget, read_trial_error
from memsweep.collect.sampler import SamplerConfig
from memsweep.collect.trials import TrialsTable, now_us
from memsweep.collect.tune_results import (
    REPLAY_SIZE_KEYS,
    Describe,
    StudyTrials,
    TuneTrial,
    lookup,
)
from memsweep.errors import MemsweepError
from memsweep.result_keys import TuneResult, TuneState
from memsweep.spec import SamplingSpec
from memsweep.store import ResultsWriter


class SweepRecorder:
    """One sweep's memory record: see the module docstring and
    :class:`~memsweep.collect.callback.MemoryCallback` for the arguments."""

    def __init__(
        self,
        results: str,
        sampling: SamplingSpec,
        budget: MemoryBudget | None,
        describe: Describe | None,
        study_name: str,
    ) -> None:
        self.writer = ResultsWriter(results)
        self.sampling = sampling
        self.budget = budget
        self.describe = describe
        self.study_name = study_name
        self.trials = TrialsTable()
        self._collector: Collector | None = None
        self._actors: dict[str, Any] = {}
        self._budget_stops: dict[str, BudgetBreach] = {}
        self._restored_groups: dict[str, str] = {}
        self._collector_error: BaseException | None = None
        self._last_result: dict[str, dict[str, Any]] = {}

    @property
    def collector_error(self) -> BaseException | None:
        """Why samples stopped being written (a full or vanished results folder), if so;
        kept after :meth:`close`."""
        return self._collector.error if self._collector else self._collector_error

    def start(self) -> None:
        """Start the collector (samplers on every node) in this driver."""
        driver_pid, driver_node = driver_identity()
        config = SamplerConfig(
            interval_s=self.sampling.interval_s,
            full_interval_s=self.sampling.full_interval_s,
            pss_max_age_s=self.sampling.pss_max_age_s,
            pss_cpu_share=self.sampling.pss_cpu_share,
            driver_pid=driver_pid,
            driver_node_id=driver_node,
        )
        self._collector = Collector(
            self.writer, config, self.sampling.flush_interval_s, self.trials, self.budget
        )
        for group, trial_id in self._restored_groups.items():
            self._collector.map_group(group, trial_id)
        self._collector.start()

    def trial_started(self, trial: TuneTrial) -> None:
        """A trial (or a resumed one, whose latest attempt is the one that counts) began."""
        described = self.describe(trial.config) if self.describe else None
        if described is None:
            self.trials.set_config(trial.trial_id, trial.config)
        self.trials.update(
            trial.trial_id,
            study=self.study_name,
            **(described or {}),
            status="running",
            run_id=self.writer.run_id,
            started_at=now_us(),
        )
        if self._collector is not None and trial.actor is not None:
            # Any trainable, memsweep's or not: its actor's placement group is the trial's.
            self._collector.map_actor(trial.actor._actor_id.hex(), trial.trial_id)
            self._actors[trial.trial_id] = trial.actor
            self._collector.add_event("trial_started", trial_id=trial.trial_id)

    def trial_result(self, trial_id: str, result: TuneResult) -> None:
        """Add memsweep's memory keys to ``result`` (unless the trainable set them), and
        record the result's progress and built-in figures."""
        memory = self._collector.trial_memory(trial_id) if self._collector else None
        for key, value in (memory.as_result() if memory else {}).items():
            result.setdefault(key, value)  # Tune lets callbacks add to a result in place.
        peak = lookup(result, (keys.PEAK_BYTES,))
        progress: dict[str, object] = {
            "ts": now_us(),
            "trial_id": trial_id,
            "run_id": self.writer.run_id,
            "iteration": result.get("training_iteration"),
            "env_steps": lookup(result, keys.ENV_STEP_KEYS),
            "replay_size": lookup(result, REPLAY_SIZE_KEYS),
            "time_total_s": result.get("time_total_s"),
            "trial_rss_bytes": lookup(result, (keys.RSS_BYTES,)),
            "trial_peak_bytes": peak,
        }
        if self._collector is not None:
            self._collector.add_progress(progress)
        row = self.trials.get(trial_id)
        built = {name: lookup(result, (key,)) for name, key in keys.BUILT_KEYS.items()}
        # What the stop rule looks at, to name the limit that ended the trial.
        self._last_result[trial_id] = {key: result.get(key) for key in self._stop_limits()}
        hwm = lookup(result, (keys.HWM_BYTES,))
        self.trials.update(
            trial_id,
            iterations=progress["iteration"],
            env_steps=progress["env_steps"],
            peak_bytes=max(peak or 0, row.peak_bytes or 0) or None,
            hwm_bytes=hwm if hwm is not None else row.hwm_bytes,
            **{name: value for name, value in built.items() if value is not None},
        )

    def stop_breaches(self) -> None:
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

    def trial_completed(self, trial: TuneTrial) -> None:
        """A trial ended normally: which stop limit it reached, if memsweep's study set one."""
        last = self._last_result.pop(trial.trial_id, {})
        stop = self.describe.study.stop if isinstance(self.describe, StudyTrials) else None
        self._end(trial, keys.TERMINATED, None, stop_reason=stop.reason(last) if stop else None)

    def _stop_limits(self) -> dict[str, float]:
        """A memsweep study's stop limits (result key → limit); none for another Tuner."""
        return self.describe.study.stop.limits() if isinstance(self.describe, StudyTrials) else {}

    def trial_failed(self, trial: TuneTrial) -> None:
        """A trial failed: stopped over budget, killed for memory (the evidence goes to
        the collector, which settles the killed process's role and node), or an error."""
        breach = self._budget_stops.pop(trial.trial_id, None)
        if breach is not None:
            self._end(
                trial, OVER_BUDGET, breach.detail, budget_measured_bytes=breach.measured_bytes
            )
            return
        text = trial.error_text()
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

    def _end(self, trial: TuneTrial, status: str, error: str | None, **facts: Any) -> None:
        row = self.trials.get(trial.trial_id)
        if row.study is None:
            # Killed before Tune reported its start (e.g. in set-up): still name it.
            self.trial_started(trial)
        self.trials.update(trial.trial_id, status=status, error=error, ended_at=now_us(), **facts)
        self._actors.pop(trial.trial_id, None)
        if self._collector is not None:
            self._collector.add_event("trial_ended", trial_id=trial.trial_id, detail=status)

    def get_state(self) -> TuneState:
        """What Tune checkpoints: the trials table and the trials' placement groups."""
        groups = self._collector.trial_of_group if self._collector else {}
        return {"trials": self.trials.get_state(), "groups": groups}

    def set_state(self, state: TuneState) -> None:
        """Restore :meth:`get_state`'s output after ``Tuner.restore``."""
        self.trials.set_state(state.get("trials", {}))
        self._restored_groups = dict(state.get("groups", {}))
        for group, trial_id in self._restored_groups.items():
            if self._collector is not None:
                self._collector.map_group(group, trial_id)

    def close(self) -> None:
        """Final drain and write; safe to call twice."""
        if self._collector is not None:
            collector, self._collector = self._collector, None
            for group, trial_id in self._restored_groups.items():
                collector.map_group(group, trial_id)
            collector.stop()
            self._collector_error = collector.error

"""The Tune callback: thin hooks that hand work to the :class:`~memsweep.collect.collector.Collector`.

Hooks run inside Tune's control loop, where slow work stalls every trial; so each hook
only records what Tune tells it (a trial started, a result, an end) and returns. Sampling
happens in the per-node sampler actors, draining and writing on the collector thread.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback

from memsweep import result_keys as keys
from memsweep.collect.collector import Collector, driver_identity
from memsweep.collect.faults import (
    OVER_BUDGET,
    MemoryBudget,
    TrialKill,
    kill_facts,
    read_trial_error,
)
from memsweep.collect.sampler import SamplerConfig
from memsweep.errors import MemsweepError
from memsweep.spec import Study, point_from_config
from memsweep.store import ResultsWriter

RESULT_KEYS = {
    "env_steps": keys.ENV_STEPS,
    "replay_size": keys.REPLAY_SIZE,
    "rss_bytes": keys.RSS_BYTES,
    "peak_bytes": keys.PEAK_BYTES,
}
"""Progress-table column ← the Tune result key the trainable reports it under."""


def _us(seconds: float | None = None) -> int:
    return int((time.time() if seconds is None else seconds) * 1_000_000)


def _error_text(trial: Any) -> str | None:
    path = getattr(trial, "error_file", None) or getattr(
        getattr(trial, "run_metadata", None), "error_filename", None
    )
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            text = ""
        if text:
            lines = [line for line in text.splitlines() if line.strip()]
            return "\n".join(lines[-3:])[:2000]
    return "trial failed (no error file)"


def _full_error_text(trial: Any, limit: int = 200_000) -> str:
    """The end of the trial's error file, whole enough for Ray's OOM report."""
    metadata = getattr(trial, "run_metadata", None)
    path = getattr(trial, "error_file", None) or getattr(metadata, "error_filename", None)
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")[-limit:] if path else ""
    except OSError:
        return ""


class MemoryCallback(Callback):
    """Samples every process of every trial on every node into the sweep's Parquet.

    ``get_state``/``set_state`` carry the trials table and the placement-group map, so
    that a sweep resumed with ``Tuner.restore`` keeps appending to the same dataset.
    """

    def __init__(
        self, study: Study, writer: ResultsWriter, cpu_share: dict[str, float] | None = None
    ) -> None:
        self.study = study
        self.writer = writer
        self._trials: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._dirty = False
        self._collector: Collector | None = None
        self._cpu_share = cpu_share or {}
        self._actor_of_trial: dict[str, Any] = {}
        self._budget_stops: dict[str, tuple[int, str]] = {}
        self._pending_kills: dict[str, tuple[TrialKill, float]] = {}
        self._collector_error: BaseException | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its RunConfig (callbacks included) into the experiment folder; a
        # writer with open handles and locks does not pickle, its location does.
        return {"study": self.study, "uri": self.writer.uri, "cpu_share": self._cpu_share}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["study"], ResultsWriter(state["uri"]), state["cpu_share"])  # type: ignore[misc]

    # -- Tune hooks ---------------------------------------------------------------------

    def setup(
        self,
        stop: Any = None,
        num_samples: int | None = None,
        total_num_samples: int | None = None,
        **info: Any,
    ) -> None:
        driver_pid, driver_node = driver_identity()
        sampling = self.study.sampling
        config = SamplerConfig(
            interval_s=sampling.interval_s,
            full_interval_s=sampling.full_interval_s,
            driver_pid=driver_pid,
            driver_node_id=driver_node,
        )
        resources = self.study.resources
        budget = (
            MemoryBudget(resources.memory_budget, resources.budget_scope)
            if resources.memory_budget is not None
            else None
        )
        self._collector = Collector(
            self.writer,
            config,
            sampling.flush_interval_s,
            on_trials_changed=self._write_trials,
            budget=budget,
            on_over_budget=self._stop_over_budget,
        )
        self._collector.start()

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        row = self._trials.get(trial.trial_id) or {}
        self._describe(trial, row)
        row["status"] = "running"
        row["run_id"] = self.writer.run_id
        # A resumed trial starts over: its latest attempt is the one that counts.
        row["started_at"] = _us()
        self._set_trial(trial.trial_id, row)
        if self._collector is not None:
            actor = getattr(getattr(trial, "temporary_state", None), "ray_actor", None)
            actor_id = getattr(actor, "_actor_id", None)
            if actor_id is not None:
                # Any trainable, memsweep's or not: its actor's placement group is the trial's.
                self._collector.map_actor(actor_id.hex(), trial.trial_id)
                with self._lock:
                    self._actor_of_trial[trial.trial_id] = actor
            self._collector.add_event("trial_started", trial_id=trial.trial_id)

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        def get(key: str) -> Any:
            return result.get(key)

        progress = {
            "ts": _us(),
            "trial_id": trial.trial_id,
            "run_id": self.writer.run_id,
            "iteration": get("training_iteration"),
            "env_steps": get(RESULT_KEYS["env_steps"]),
            "replay_size": get(RESULT_KEYS["replay_size"]),
            "time_total_s": get("time_total_s"),
            "trial_rss_bytes": get(RESULT_KEYS["rss_bytes"]),
            "trial_peak_bytes": get(RESULT_KEYS["peak_bytes"]),
        }
        if self._collector is not None:
            self._collector.add_progress(progress)
        with self._lock:
            row = self._trials.setdefault(trial.trial_id, {"trial_id": trial.trial_id})
            row["iterations"] = progress["iteration"]
            row["env_steps"] = progress["env_steps"]
            peak = progress["trial_peak_bytes"]
            if peak is not None:
                row["peak_bytes"] = max(int(peak), int(row.get("peak_bytes") or 0))
            for key, result_key in keys.BUILT_KEYS.items():
                value = get(result_key)
                if value is not None:
                    row[key] = int(value)
            self._dirty = True

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._end(trial, "terminated", None)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        with self._lock:
            budget_stop = self._budget_stops.pop(trial.trial_id, None)
        if budget_stop is not None:
            measured, detail = budget_stop
            self._end(trial, OVER_BUDGET, detail, {"budget_measured_bytes": measured})
            return
        kill = read_trial_error(_full_error_text(trial))
        used, limit = kill.node_used_bytes, kill.node_limit_bytes
        self._end(
            trial,
            kill.status,
            kill.summary or _error_text(trial),
            {
                "killed_pid": kill.killed_pids[0] if kill.killed_pids else None,
                "killed_node_id": kill.node_id,
                "kill_node_used_bytes": used,
                "kill_node_available_bytes": None
                if used is None or limit is None
                else limit - used,
            },
        )
        if kill.killed_pids:
            with self._lock:
                # Which process (role, node) and, for a vanished one, whether the kernel
                # killed it, is settled on the collector thread (it talks to the nodes).
                self._pending_kills[trial.trial_id] = (kill, time.monotonic())

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        self.close()

    # -- state ---------------------------------------------------------------------------

    def get_state(self) -> dict[str, Any] | None:
        with self._lock:
            trials = {k: dict(v) for k, v in self._trials.items()}
        groups = self._collector.trial_of_group if self._collector else {}
        return {"trials": trials, "groups": groups}

    def set_state(self, state: dict[str, Any]) -> None:
        with self._lock:
            self._trials = {k: dict(v) for k, v in state.get("trials", {}).items()}
            for row in self._trials.values():
                if row.get("status") == "running":
                    row["status"] = "interrupted"
            self._dirty = True
        self._restored_groups = dict(state.get("groups", {}))
        if self._collector is not None:
            for group, trial in self._restored_groups.items():
                self._collector.map_group(group, trial)

    # -- helpers ---------------------------------------------------------------------------

    def _set_trial(self, trial_id: str, row: dict[str, Any]) -> None:
        with self._lock:
            self._trials[trial_id] = row
            self._dirty = True

    def _describe(self, trial: Any, row: dict[str, Any]) -> None:
        """The trial's study and factor values into its row."""
        row.update({"trial_id": trial.trial_id, "study": self.study.name})
        try:
            point = point_from_config(self.study, trial.config)
        except (KeyError, TypeError, ValueError, MemsweepError):
            point = None  # Not a memsweep trainable: sampled and attributed all the same.
        if point is not None:
            row.update(
                {
                    "algorithm": self.study.algorithm,
                    "env": self.study.env.label,
                    "api_stack": point.api_stack(self.study),
                    **point.as_row(),
                    "cpus_per_trainable": self.study.resources.cpus_per_trainable,
                    "cpus_per_env_runner": self.study.resources.cpus_per_env_runner,
                }
            )

    def _end(
        self, trial: Any, status: str, error: str | None, facts: dict[str, Any] | None = None
    ) -> None:
        with self._lock:
            row = self._trials.setdefault(trial.trial_id, {"trial_id": trial.trial_id})
            if "study" not in row:
                # Killed before Tune reported its start (e.g. in set-up): still name it.
                self._describe(trial, row)
                row["run_id"] = self.writer.run_id
            row["status"] = status
            row["error"] = error
            row["ended_at"] = _us()
            row.update(facts or {})
            self._actor_of_trial.pop(trial.trial_id, None)
            self._dirty = True
        if self._collector is not None:
            self._collector.add_event("trial_ended", trial_id=trial.trial_id, detail=status)

    def _stop_over_budget(self, trial_id: str, measured_bytes: int, detail: str) -> None:
        """Kill the trial's trainable actor (its env runners go with it); Tune then
        reports the trial's error, recorded as ``over_budget``. Collector thread."""
        import ray

        with self._lock:
            actor = self._actor_of_trial.get(trial_id)
            if actor is None:
                return  # Already ended.
            self._budget_stops[trial_id] = (measured_bytes, detail)
            row = self._trials.setdefault(trial_id, {"trial_id": trial_id})
            row["memory_budget_bytes"] = self.study.resources.memory_budget
        try:
            ray.kill(actor, no_restart=True)
        except Exception as exc:
            with self._lock:
                self._budget_stops.pop(trial_id, None)
            raise MemsweepError(f"could not stop trial {trial_id} over budget: {exc}") from exc

    def _resolve_kills(self) -> None:
        """Fill in the killed process's role and node, the node's memory, and the kernel's
        verdict, once the collector has the killed process's last samples."""
        collector = self._collector
        if collector is None:
            return
        with self._lock:
            pending = dict(self._pending_kills)
        patience_s = 3 * collector.flush_interval_s + 5
        for trial_id, (kill, since) in pending.items():
            found = collector.process_of(trial_id, kill.killed_pids)
            if found is None and not collector.stopping and time.monotonic() - since < patience_s:
                continue
            kernel = None
            if found is not None and kill.vanished:
                kernel = collector.kernel_oom_killed(found[1], found[0], found[3])
            memory = collector.node_memory(found[1]) if found is not None else (None, None)
            facts = kill_facts(kill, found, memory, kernel)
            with self._lock:
                self._pending_kills.pop(trial_id, None)
                self._trials.setdefault(trial_id, {"trial_id": trial_id}).update(facts)
                self._dirty = True

    def _write_trials(self) -> None:
        self._resolve_kills()
        with self._lock:
            if not self._dirty:
                return
            rows = [dict(row) for row in self._trials.values()]
            self._dirty = False
        groups = self._collector.trial_of_group if self._collector else {}
        pg_of_trial = {trial: group for group, trial in groups.items()}
        for row in rows:
            row.setdefault("placement_group_id", pg_of_trial.get(row["trial_id"]))
        self.writer.replace("trials", rows)

    def trials_snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(row) for row in self._trials.values()]

    def close(self) -> None:
        """Final drain and write; safe to call twice."""
        if self._collector is not None:
            for group, trial in getattr(self, "_restored_groups", {}).items():
                self._collector.map_group(group, trial)
            self._collector.stop()
            with self._lock:
                self._dirty = True
            try:
                self._write_trials()
            finally:
                self._collector_error = self._collector.error
                self._collector = None

    @property
    def collector_error(self) -> BaseException | None:
        """Why samples stopped being written (a full or vanished results folder), if so;
        kept after :meth:`close`."""
        return self._collector.error if self._collector else self._collector_error

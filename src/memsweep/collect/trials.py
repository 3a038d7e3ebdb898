"""The trials table while a run goes on: one typed :class:`TrialRow` per Tune trial.

Tune's thread (the callback's hooks) and the collector thread both change it, through
:class:`TrialsTable`'s methods, under its lock; the collector writes it whole to
``trials.parquet`` (:data:`memsweep.store.TRIALS`) when it changed. A row is a frozen
dataclass: a change is a new row (``dataclasses.replace``), never a dict edited in place.

The factors of a trial that memsweep did not start (any trainable, any ``param_space``)
are the keys of its flattened config whose values differ between the run's trials:
``factors_json`` holds those, ``config_json`` the whole flattened config.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from memsweep.result_keys import TuneConfig, TuneState
from memsweep.store import TRIALS


@dataclass(frozen=True, slots=True)
class TrialRow:
    """One row of ``trials.parquet``; each field is the column of that name (units and
    meaning in ``docs/schema.md``). Times are epoch microseconds."""

    trial_id: str
    study: str | None = None
    algorithm: str | None = None
    env: str | None = None
    api_stack: str | None = None
    replay_capacity: int | None = None
    model: str | None = None
    num_workers: int | None = None
    framework: str | None = None
    repeat: int | None = None
    seed: int | None = None
    cpus_per_trainable: float | None = None
    cpus_per_env_runner: float | None = None
    model_params: int | None = None
    obs_bytes: int | None = None
    built_replay_capacity: int | None = None
    built_num_env_runners: int | None = None
    placement_group_id: str | None = None
    run_id: str | None = None
    status: str | None = None
    error: str | None = None
    started_at: int | None = None
    ended_at: int | None = None
    iterations: int | None = None
    env_steps: int | None = None
    stop_reason: str | None = None
    hwm_bytes: int | None = None
    peak_bytes: int | None = None
    killed_pid: int | None = None
    killed_role: str | None = None
    killed_node_id: str | None = None
    kill_node_used_bytes: int | None = None
    kill_node_available_bytes: int | None = None
    ray_exit_type: str | None = None
    ray_exit_detail: str | None = None
    kill_memory_users_json: str | None = None
    kill_cgroup: str | None = None
    kill_cgroup_oom_kills: int | None = None
    kill_cgroup_peak_bytes: int | None = None
    kill_anon_rss_bytes: int | None = None
    memory_budget_bytes: int | None = None
    budget_measured_bytes: int | None = None
    factors_json: str | None = None
    config_json: str | None = None

    def with_(self, **changes: Any) -> TrialRow:
        """This row with ``changes`` (column name → value)."""
        return dataclasses.replace(self, **changes)

    def as_record(self) -> dict[str, Any]:
        """Parquet-ready: times as UTC datetimes."""
        record = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name in ("started_at", "ended_at"):
            if record[name] is not None:
                record[name] = datetime.fromtimestamp(record[name] / 1e6, UTC)
        return record


TRIAL_COLUMNS = frozenset(f.name for f in dataclasses.fields(TrialRow))
assert set(TRIALS.names) == TRIAL_COLUMNS, "TrialRow and store.TRIALS disagree"


def now_us() -> int:
    return int(time.time() * 1_000_000)


def _json_value(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return str(value) if isinstance(value, bool) else None
    if isinstance(value, int | float):
        return value
    return str(value)


def flat_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A Tune trial config → ``{dotted.key: value}``, numbers kept, the rest as strings
    (what ``config_json`` and ``factors_json`` hold)."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping) and value:
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        else:
            flat[prefix] = _json_value(value)

    walk("", config)
    # RLlib's AlgorithmConfig.to_dict() names some settings by their private attribute
    # (``_train_batch_size_per_learner``): name them as users set them.
    for key in [k for k in flat if k.startswith("_") and not k.startswith("__")]:
        if key[1:] not in flat:
            flat[key[1:]] = flat.pop(key)
    return flat


def varied_keys(configs: Iterable[Mapping[str, Any]]) -> list[str]:
    """The keys whose values differ between ``configs`` (flat), sorted."""
    seen: dict[str, set[str]] = {}
    configs = list(configs)
    for config in configs:
        for key, value in config.items():
            seen.setdefault(key, set()).add(json.dumps(value))
    return sorted(
        key
        for key, values in seen.items()
        if len(values) > 1 or any(key not in config for config in configs)
    )


class TrialsTable:
    """Every trial of a run, by trial id. Thread-safe; :meth:`take_if_changed` is what the
    collector writes."""

    def __init__(self) -> None:
        self._rows: dict[str, TrialRow] = {}
        self._configs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._changed = False

    def get(self, trial_id: str) -> TrialRow:
        with self._lock:
            return self._rows.get(trial_id) or TrialRow(trial_id)

    def update(self, trial_id: str, **changes: Any) -> TrialRow:
        """Set ``changes`` on the trial's row (created if new); returns the new row."""
        with self._lock:
            row = (self._rows.get(trial_id) or TrialRow(trial_id)).with_(**changes)
            self._rows[trial_id] = row
            self._changed = True
            return row

    def set_config(self, trial_id: str, config: TuneConfig) -> None:
        """The trial's Tune config: its flattened form goes to ``config_json``, and the
        keys that differ between trials to ``factors_json``."""
        flat = flat_config(config)
        with self._lock:
            self._configs[trial_id] = flat
            self._changed = True

    def rows(self) -> list[TrialRow]:
        with self._lock:
            return list(self._rows.values())

    def mark_changed(self) -> None:
        with self._lock:
            self._changed = True

    def take_if_changed(self) -> list[TrialRow] | None:
        """The rows to write if anything changed since the last call, else None."""
        with self._lock:
            if not self._changed:
                return None
            self._changed = False
            factors = varied_keys(self._configs.values()) if len(self._configs) > 1 else []
            out = []
            for trial_id, row in self._rows.items():
                config = self._configs.get(trial_id)
                if config is None:
                    out.append(row)
                    continue
                own = json.dumps({k: config.get(k) for k in factors}, sort_keys=True)
                out.append(
                    row.with_(
                        config_json=json.dumps(config, sort_keys=True),
                        factors_json=row.factors_json or own,
                    )
                )
            return out

    def get_state(self) -> TuneState:
        with self._lock:
            return {
                "rows": {k: dataclasses.asdict(v) for k, v in self._rows.items()},
                "configs": dict(self._configs),
            }

    def set_state(self, state: TuneState) -> None:
        """Restore after ``Tuner.restore``; trials that were running are ``interrupted``."""
        with self._lock:
            rows = {}
            for trial_id, fields in state.get("rows", {}).items():
                row = TrialRow(**{k: v for k, v in fields.items() if k in TRIAL_COLUMNS})
                rows[trial_id] = row.with_(status="interrupted") if row.status == "running" else row
            self._rows = rows
            self._configs = dict(state.get("configs", {}))
            self._changed = True

"""The analysis of one sweep, end to end: read → phases → growth verdicts → factor models."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import pandas as pd

from memsweep.analyze.growth import GrowthRule
from memsweep.analyze.leaks import DEFAULT_HORIZON_ENV_STEPS, GrowthVerdict, growth_verdicts
from memsweep.analyze.load import SYSTEM_ROLES, TRIAL_ROLES, SweepData, load_sweep
from memsweep.analyze.models import ModelSet, fit_all
from memsweep.analyze.phases import TrialPhases, all_phases
from memsweep.analyze.segments import PhaseOptions
from memsweep.errors import DataError, MemsweepError
from memsweep.store import Results


@dataclass(frozen=True)
class AnalysisOptions:
    """Knobs of the analysis; the defaults suit a sweep sampled at 10 Hz / 1 Hz."""

    confidence: float = 0.95
    """Two-sided level of every interval."""

    max_buckets: int = 600
    """Time buckets per trial at most (longer trials get wider buckets)."""

    growth: GrowthRule = field(default_factory=GrowthRule)
    """Thresholds of the growth verdict (:mod:`memsweep.analyze.growth`); its interval
    level follows ``confidence``."""

    horizon_env_steps: float = DEFAULT_HORIZON_ENV_STEPS
    """Env steps a sustained growth is projected to (``--horizon``)."""

    def __post_init__(self) -> None:
        if not 0.5 <= self.confidence < 1:
            raise MemsweepError(f"confidence must be in [0.5, 1), got {self.confidence}")
        if self.max_buckets < 10:
            raise MemsweepError(f"max_buckets must be ≥ 10, got {self.max_buckets}")
        if not self.horizon_env_steps > 0:
            raise MemsweepError(f"horizon must be > 0 env steps, got {self.horizon_env_steps}")

    @property
    def phases(self) -> PhaseOptions:
        return PhaseOptions(confidence=self.confidence)


@dataclass(frozen=True, eq=False)
class Analysis:
    """Everything the report, ``predict`` and other tools need about one sweep."""

    uri: str
    name: str
    options: AnalysisOptions
    data: SweepData = field(repr=False)
    trials: tuple[TrialPhases, ...]
    """Phases of every trial with samples."""

    verdicts: tuple[GrowthVerdict, ...]
    """Growth verdict per trial and role."""

    models: ModelSet
    trial_table: pd.DataFrame = field(repr=False)
    """One row per analysed trial: factors and trial-level quantities (bytes)."""

    system_bytes_per_node: float
    """Median memory of Ray's own processes on a node (raylet, GCS, dashboard, idle
    workers): not the Tune driver, not memsweep's samplers."""

    missing: tuple[str, ...]
    notes: tuple[str, ...]
    timings_s: dict[str, float]

    driver_bytes: float = 0.0
    """Median memory of the process that ran Tune (``memsweep run``'s own driver, or the
    user's script with ``MemoryCallback``): one per run, on the head node."""

    sampler_bytes_per_node: float = 0.0
    """Median memory of memsweep's sampler actor on a node: runs only while memsweep
    measures, so no prediction includes it."""

    def trial(self, trial_id: str) -> TrialPhases:
        return next(t for t in self.trials if t.trial_id == trial_id)

    def verdict(self, trial_id: str, role: str = "total") -> GrowthVerdict:
        return next(v for v in self.verdicts if v.trial_id == trial_id and v.role == role)

    @property
    def flagged(self) -> tuple[GrowthVerdict, ...]:
        """Sustained growth, per trial and role."""
        return tuple(v for v in self.verdicts if v.flagged)


def trial_table(trials: Sequence[TrialPhases], factor_names: Sequence[str] = ()) -> pd.DataFrame:
    """Trial-level quantities for the factor models; plateau and peak only when measured.

    One column per factor (``factor_names``: a factor whose values are all numbers is
    numeric, any other a label), ``plateau__ROLE``, ``peak__ROLE``,
    ``plateau_extrapolated__ROLE``, ``fill_bpt__ROLE`` and ``buffer_bpt__ROLE`` (bytes)."""
    rows = []
    for trial in trials:
        row: dict[str, object] = {"trial_id": trial.trial_id, **trial.factors}
        row["plateau_reached"] = trial.plateau_reached
        for role in trial.roles:
            plateau = role.plateau
            row[f"plateau__{role.role}"] = plateau.value if plateau else None
            row[f"peak__{role.role}"] = role.peak_bytes if plateau else None
            extrapolated = role.plateau_extrapolated
            row[f"plateau_extrapolated__{role.role}"] = extrapolated.value if extrapolated else None
            bpt = role.fill_bytes_per_transition
            row[f"fill_bpt__{role.role}"] = bpt.value if bpt else None
            buffer = role.buffer_bytes_per_transition
            row[f"buffer_bpt__{role.role}"] = buffer.value if buffer else None
        rows.append(row)
    table = pd.DataFrame(rows).set_index("trial_id")
    quantities = ("plateau__", "peak__", "fill_bpt__", "buffer_bpt__", "plateau_extrapolated__")
    for column in table.columns:
        if column.startswith(quantities):
            table[column] = pd.to_numeric(table[column], errors="coerce")
    for column in ("replay_capacity", "model_params", "num_workers", "obs_bytes"):
        table[column] = pd.to_numeric(table[column], errors="coerce")
    for column in factor_names:
        if column in table.columns and column not in ("model", "framework"):
            numbers = pd.to_numeric(table[column], errors="coerce")
            if numbers.notna().sum() == table[column].notna().sum():
                table[column] = numbers
    if "model" in table.columns and table["model"].notna().any():
        # The old API stack's model carries a value layer DQN never uses (tens of
        # parameters), so the same model label counts a few parameters more under tf2
        # than under torch. Model size is a property of the label: use one count per
        # label, or framework and model size look confounded when they are not.
        table["model_params"] = table.groupby("model")["model_params"].transform("median")
    return table


def _with_buffer_cost(models: ModelSet, trials: Sequence[TrialPhases]) -> ModelSet:
    """The sweep's buffer cost: one trial's own estimate when only one has it (the mean of
    several is ``fit_all``'s), and why it could not be separated where it could not."""
    separated = [t.total.buffer_bytes_per_transition for t in trials]
    found = [e for e in separated if e is not None]
    notes = tuple(
        f"{t.trial_id}: {t.total.buffer_note}"
        for t in trials
        if t.total.buffer_bytes_per_transition is None and t.total.buffer_note
    )
    buffer = models.buffer_bytes_per_transition
    if buffer is None and len(found) == 1:
        buffer = found[0]
    return replace(models, buffer_bytes_per_transition=buffer, buffer_notes=notes)


def analyze_results(
    uri: str | os.PathLike[str] | Results, options: AnalysisOptions | None = None
) -> Analysis:
    """Analyse a results folder (local path, ``pyarrow.fs`` URI, or an opened ``Results``).

    Raises :class:`DataError` when there is nothing to analyse (not a sweep, no trials,
    no samples). A running or crashed sweep is analysed as far as its data go; what is
    missing is listed in ``missing``.
    """
    options = options or AnalysisOptions()
    clock = time.perf_counter()
    source = uri if isinstance(uri, Results) else os.fspath(uri)
    data = load_sweep(source, max_buckets=options.max_buckets)
    step = time.perf_counter()
    trials = all_phases(data, options.phases)
    if not trials:
        raise DataError(
            f"{data.uri}: no trial has both samples and factor values: nothing to analyse"
        )
    rule = replace(options.growth, confidence=options.confidence)
    verdicts = growth_verdicts(trials, data, rule, options.horizon_env_steps)
    phases_s = time.perf_counter() - step
    step = time.perf_counter()
    table = trial_table(trials, data.factor_names)
    roles_seen = {r.role for t in trials for r in t.roles if r.role != "total"}
    roles = tuple(r for r in TRIAL_ROLES if r in roles_seen) + tuple(
        sorted(roles_seen - set(TRIAL_ROLES))
    )
    models = fit_all(table, roles, options.confidence, factors=data.factor_names)
    models = _with_buffer_cost(models, trials)
    models_s = time.perf_counter() - step

    notes = list(data.notes)
    notes += [f.note for f in models.factors if not f.in_model]
    no_plateau = [t.trial_id for t in trials if not t.plateau_reached]
    if no_plateau:
        notes.append(
            f"{len(no_plateau)} trial(s) never reached their plateau and are not in the factor "
            f"models (their plateau is extrapolated per trial): {', '.join(no_plateau)}"
        )
    system = data.system

    def per_node(roles: tuple[str, ...]) -> float:
        rows = system[system["role"].isin(roles)] if len(system) else system
        sums = rows.groupby("node_id")["mem_bytes"].sum() if len(rows) else None
        return float(sums.mean()) if sums is not None and len(sums) else 0.0

    drivers = system[system["role"] == "driver"] if len(system) else system
    timings = {**data.timings_s, "phases_s": phases_s, "models_s": models_s}
    timings["analysis_s"] = time.perf_counter() - clock
    return Analysis(
        uri=data.uri,
        name=data.name,
        options=options,
        data=data,
        trials=trials,
        verdicts=verdicts,
        models=models,
        trial_table=table,
        system_bytes_per_node=per_node(SYSTEM_ROLES),
        driver_bytes=float(drivers["mem_bytes"].sum()) if len(drivers) else 0.0,
        sampler_bytes_per_node=per_node(("memsweep",)),
        missing=data.missing,
        notes=tuple(dict.fromkeys(notes)),
        timings_s=timings,
    )

"""``memsweep export-mlflow``: a sweep's memory time series as MLflow runs, one per trial.

**What is logged.** One MLflow run per analysed trial (run name = the Tune trial id),
through ``MlflowClient.log_batch`` (MLflow's client API; nothing is written by hand):

- params: the trial's factors (``trials.parquet`` ``factors_json``; built-ins and any
  dotted RLlib key), as MLflow stores params: text;
- metric histories: per role (``trainable``, ``env_runner``, …, and ``total``, the whole
  trial) ``memory/<role>/pss_bytes`` and ``memory/<role>/rss_bytes``, and
  ``replay/stored_transitions`` where the trial reported its buffer: the analysis' own
  series (:attr:`memsweep.analyze.load.SweepData.series`, the one the report plots: per
  time bucket of ≥ 2 PSS rounds, each process's mean over the bucket, summed over the
  role's processes), so MLflow's charts show the numbers memsweep's report shows;
- summary metrics (one value each): ``summary/<role>/peak_bytes`` (max over time of Σ PSS,
  from every sample: :mod:`memsweep.store.peaks`), ``summary/<role>/plateau_bytes`` with
  ``…_low``/``…_high`` (the plateau level and its interval, where reached),
  ``summary/<role>/growth_mb_per_1m_env_steps`` (late rate over the plateau, where
  measured), ``summary/env_steps``;
- tags: ``growth/<role>`` (the growth verdict: "no growth", "sustained growth", …),
  ``growth/<role>/text`` (the report's sentence), ``memsweep.trial_id``,
  ``memsweep.sweep``, ``memsweep.results``, ``memsweep.step`` (see below), and the
  versions the sweep ran with (``versions/<package>`` from ``versions.json``).

**Step and time.** Each history point's MLflow *step* is the trial's env steps sampled
at that bucket (interpolated between Tune results, as in the report); points before the
trial's first Tune result (the algorithm's build and first iteration) are at step 0, and
points after its last one at that result's count (no env step is sampled after it). A
trial with no env steps at all (a plain Tune function) uses whole seconds since its
first sample. Its *timestamp* is the bucket's wall time (ms since the epoch), so MLflow's
"Relative time" x-axis shows seconds since the trial started either way. The run's
``memsweep.step`` tag says which step it is (``env_steps`` or ``seconds``).

Exporting the same results folder again into the same experiment skips the trials
already there (matched by ``memsweep.trial_id`` and ``memsweep.run_id`` tags).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

import pandas as pd

from memsweep.analyze.analysis import Analysis
from memsweep.errors import MemsweepError, OutputError
from memsweep.units import Estimate, as_written

MLFLOW_INSTALL = "pip install 'memsweep[mlflow]'"
"""How to get the optional MLflow client (``mlflow-skinny``)."""

MLFLOW_TESTED = "3.17.2"
"""The ``mlflow-skinny`` version the export is tested with (pinned in requirements.lock)."""

SEARCH_MAX_RESULTS = 50_000
"""Runs read back at most when looking for trials already exported (MLflow's own cap)."""

HISTORY_COLUMNS = {"pss_bytes": "pss_bytes", "rss_bytes": "rss_bytes"}
"""Series column → metric name under ``memory/<role>/``."""


@dataclass(frozen=True)
class MetricPoint:
    """One MLflow metric value."""

    key: str
    value: float
    step: int
    """Env steps (or seconds, see the module docstring)."""
    timestamp_ms: int
    """Wall time of the point, ms since the epoch."""


@dataclass(frozen=True)
class TrialRun:
    """What one trial becomes in MLflow, before anything is sent."""

    trial_id: str
    params: tuple[tuple[str, str], ...]
    """Factor name → value as text (MLflow params are text)."""
    tags: tuple[tuple[str, str], ...]
    metrics: tuple[MetricPoint, ...]
    """Histories first (by time), then the summary metrics."""
    step_unit: Literal["env_steps", "seconds"]


@dataclass(frozen=True)
class ExportSummary:
    tracking_uri: str
    experiment: str
    experiment_id: str
    runs: tuple[tuple[str, str], ...]
    """Trial id → MLflow run id of the runs written now."""
    skipped: tuple[str, ...]
    """Trial ids already in the experiment from this results folder."""
    metric_points: int

    def text(self) -> str:
        lines = [
            f"memsweep export-mlflow: {len(self.runs)} trial(s) exported as MLflow runs "
            f"({self.metric_points:,} metric values) to experiment {self.experiment!r} "
            f"(id {self.experiment_id}) at {self.tracking_uri}"
        ]
        if self.skipped:
            lines.append(
                f"  {len(self.skipped)} trial(s) already there, skipped: {', '.join(self.skipped)}"
            )
        lines.append(f"  view: mlflow ui --backend-store-uri {self.tracking_uri}")
        return "\n".join(lines)


def _summary(prefix: str, estimate: Estimate | None) -> Iterator[tuple[str, float]]:
    if estimate is not None and math.isfinite(estimate.value):
        yield prefix, float(estimate.value)
        if math.isfinite(estimate.low) and math.isfinite(estimate.high):
            yield f"{prefix}_low", float(estimate.low)
            yield f"{prefix}_high", float(estimate.high)


def trial_runs(
    analysis: Analysis, versions: dict[str, object] | None = None
) -> tuple[TrialRun, ...]:
    """The MLflow runs of every analysed trial of ``analysis`` (pure: nothing is sent).

    Params come from the trial's factors (``factors_json``); histories from
    ``analysis.data.series``; summaries from the trial's phases and growth verdicts."""
    data = analysis.data
    packages = (versions or {}).get("packages")
    version_tags = (
        tuple((f"versions/{name}", str(v)) for name, v in sorted(packages.items()))
        if isinstance(packages, dict)
        else ()
    )
    series = data.series
    runs = []
    for trial in analysis.trials:
        trial_id = trial.trial_id
        factors = data.factors.get(trial_id) or trial.factors
        params = tuple((str(k), as_written(v)) for k, v in sorted(factors.items()))
        rows = series[series["trial_id"] == trial_id].sort_values(["role", "t_s"])
        has_steps = bool(rows["env_steps"].notna().any())
        # After its last Tune result a trial samples no more env steps: the last count holds.
        steps_of = rows.groupby("role")["env_steps"].ffill()
        step_unit: Literal["env_steps", "seconds"] = "env_steps" if has_steps else "seconds"
        start_s = data.starts_s.get(trial_id, 0.0)
        points: list[MetricPoint] = []
        for row, known in zip(rows.itertuples(index=False), steps_of, strict=True):
            t_s = float(row.t_s)
            known_steps = float(known) if pd.notna(known) else 0.0
            step = round(known_steps if has_steps else t_s)
            stamp = round((start_s + t_s) * 1000)
            for column, name in HISTORY_COLUMNS.items():
                value = getattr(row, column)
                if pd.notna(value):
                    points.append(
                        MetricPoint(f"memory/{row.role}/{name}", float(value), step, stamp)
                    )
            if row.role == "total" and pd.notna(row.stored):
                points.append(
                    MetricPoint("replay/stored_transitions", float(row.stored), step, stamp)
                )
        last_step = max((p.step for p in points), default=0)
        last_stamp = max((p.timestamp_ms for p in points), default=round(start_s * 1000))
        summary: list[tuple[str, float]] = []
        tags = [
            ("memsweep.trial_id", trial_id),
            ("memsweep.sweep", data.name),
            ("memsweep.results", data.uri),
            ("memsweep.step", step_unit),
            ("memsweep.plateau_reached", str(trial.plateau_reached).lower()),
            *version_tags,
        ]
        run_id = data.trials["run_id"].get(trial_id) if "run_id" in data.trials else None
        if isinstance(run_id, str) and run_id:
            tags.append(("memsweep.run_id", run_id))
        for role in trial.roles:
            if role.peak_bytes is not None and math.isfinite(role.peak_bytes):
                summary.append((f"summary/{role.role}/peak_bytes", float(role.peak_bytes)))
            summary += _summary(f"summary/{role.role}/plateau_bytes", role.plateau)
        for verdict in analysis.verdicts:
            if verdict.trial_id != trial_id:
                continue
            tags.append((f"growth/{verdict.role}", verdict.verdict))
            tags.append((f"growth/{verdict.role}/text", verdict.text[:8000]))
            summary += _summary(
                f"summary/{verdict.role}/growth_mb_per_1m_env_steps", verdict.rate_mb_per_1m_steps
            )
        if trial.env_steps is not None and math.isfinite(trial.env_steps):
            summary.append(("summary/env_steps", float(trial.env_steps)))
        points += [MetricPoint(k, v, last_step, last_stamp) for k, v in summary]
        runs.append(TrialRun(trial_id, params, tuple(tags), tuple(points), step_unit))
    return tuple(runs)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _store_errors() -> tuple[type[Exception], ...]:
    """What opening a tracking store raises past MLflow: OSError, and SQLAlchemy's error
    type from MLflow's SQL store (a file SQLite cannot open)."""
    try:
        from sqlalchemy.exc import SQLAlchemyError
    except ImportError:
        return (OSError,)
    return (OSError, SQLAlchemyError)


_T = TypeVar("_T")


def _chunks(items: Sequence[_T], size: int) -> Iterator[list[_T]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def export_to_mlflow(
    analysis: Analysis,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    versions: dict[str, object] | None = None,
) -> ExportSummary:
    """Log every trial of ``analysis`` as an MLflow run (:func:`trial_runs`).

    ``tracking_uri`` None means MLflow's own default (``MLFLOW_TRACKING_URI``, else
    ``sqlite:///mlflow.db`` in the working directory); ``experiment`` None means the
    sweep's name; the experiment is created if missing. Raises :class:`MemsweepError`
    (exit 2) when MLflow is not installed, or naming the tracking URI when MLflow
    refuses it; :class:`OutputError` (exit 5) when its store cannot be opened."""
    try:
        from mlflow.entities import Metric, Param
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise MemsweepError(f"export-mlflow needs MLflow: {MLFLOW_INSTALL}") from None

    name = experiment or analysis.data.name
    try:
        client = MlflowClient(tracking_uri=tracking_uri)
        uri = str(client.tracking_uri)
        found = client.get_experiment_by_name(name)
        experiment_id = found.experiment_id if found else client.create_experiment(name)
        sweep = analysis.data.name
        # A sweep's name is a safe literal (spec: letters, digits, _.-); a folder's name
        # standing in for it might not be, and then every run of the experiment is read.
        safe = re.fullmatch(r"[\w.\- ]+", sweep) is not None
        done = {
            (r.data.tags.get("memsweep.trial_id"), r.data.tags.get("memsweep.run_id"))
            for r in client.search_runs(
                [experiment_id],
                filter_string=f"tags.`memsweep.sweep` = '{sweep}'" if safe else "",
                max_results=SEARCH_MAX_RESULTS,
            )
            if r.data.tags.get("memsweep.sweep") == sweep
        }
    except MlflowException as exc:
        raise MemsweepError(
            f"--tracking-uri {tracking_uri or '(MLflow default)'}: MLflow refused it: "
            f"{_first_line(exc)}"
        ) from None
    except _store_errors() as exc:
        raise OutputError(
            f"--tracking-uri {tracking_uri or '(MLflow default)'}: cannot open the tracking "
            f"store ({_first_line(exc)}): give a store you can write to, e.g. "
            "sqlite:///mlflow.db"
        ) from None
    written: list[tuple[str, str]] = []
    skipped: list[str] = []
    count = 0
    for run in trial_runs(analysis, versions):
        tags = dict(run.tags)
        if (run.trial_id, tags.get("memsweep.run_id")) in done:
            skipped.append(run.trial_id)
            continue
        created = client.create_run(
            experiment_id,
            start_time=min((p.timestamp_ms for p in run.metrics), default=None),
            tags=tags,
            run_name=run.trial_id,
        )
        run_id = created.info.run_id
        params = [Param(k, v[:6000]) for k, v in run.params]
        for some_params in _chunks(params, 100):
            client.log_batch(run_id, params=some_params)
        metrics = [Metric(p.key, p.value, p.timestamp_ms, p.step) for p in run.metrics]
        for some_metrics in _chunks(metrics, 1000):
            client.log_batch(run_id, metrics=some_metrics)
        client.set_terminated(
            run_id, end_time=max((p.timestamp_ms for p in run.metrics), default=None)
        )
        written.append((run.trial_id, run_id))
        count += len(metrics)
    return ExportSummary(uri, name, experiment_id, tuple(written), tuple(skipped), count)

"""Run a study: an embedded (or given) Ray, a Tune sweep with the memory callback.

The data path starts here: study → Tune trials → samples → Parquet. This module knows
Tune and Ray; it does not know how the data is analysed.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

import yaml

from memsweep import result_keys as keys
from memsweep.errors import ClusterError, MemsweepError, SpecError
from memsweep.spec import Study, TrialPoint
from memsweep.store import SCHEMA_VERSION, ResultsWriter, is_remote, open_results
from memsweep.store.compact import compact_results

WORKER_ENV = {
    # RLlib's TF models need Keras 2 (tf-keras); Keras 3 breaks them.
    "TF_USE_LEGACY_KERAS": "1",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "PYTHONWARNINGS": "ignore::DeprecationWarning",
}
"""Environment of every Ray worker of a sweep (through the job's runtime env)."""

_PACKAGES = (
    "memsweep",
    "ray",
    "torch",
    "tensorflow",
    "tf-keras",
    "gymnasium",
    "ale-py",
    "numpy",
    "pyarrow",
    "duckdb",
    "pandas",
    "psutil",
)


@dataclass(frozen=True)
class SweepOutcome:
    """What a finished (or stopped) sweep left behind."""

    storage: str
    num_trials: int
    num_errors: int
    seconds: float
    report: str | None = None
    """An application's report text (the budget search's), also written to the storage."""


def versions() -> dict[str, Any]:
    """Package versions and machine facts, stored next to the data they produced."""
    import psutil

    packages: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    return {
        "schema_version": SCHEMA_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "hostname": socket.gethostname(),
        "cpus": os.cpu_count(),
        "memory_bytes": psutil.virtual_memory().total,
        "packages": packages,
    }


def param_space(study: Study) -> dict[str, Any]:
    """Tune's param space: the grid's points, or distributions for a searcher."""
    from ray import tune

    base: dict[str, Any] = {"study": study.model_dump(mode="json")}
    if study.search.mode == "grid":
        base["point"] = tune.grid_search([p.model_dump(mode="json") for p in study.points()])
        return base
    if study.search.mode == "budget":
        # The maximised factors are the searcher's; the others are fixed values.
        f = study.budget_factors()
        fixed = {
            "replay_capacity": f.replay_capacity[0],
            "model": f.model[0].label,
            "num_workers": f.num_workers[0],
            "framework": f.framework[0],
        }
        for name in study.search.weights:
            fixed[name] = tune.choice(sorted(getattr(f, name)))
        fixed["rllib"] = {name: levels[0] for name, levels in f.rllib.items()}
        base.update({**fixed, "repeat": 0, "seed": study.seed})
        return base
    f = study.factors
    base.update(
        {
            "replay_capacity": tune.choice(list(f.replay_capacity)),
            "model": tune.choice([m.label for m in f.model]),
            "num_workers": tune.choice(list(f.num_workers)),
            "framework": tune.choice(list(f.framework)),
            "rllib": {name: tune.choice(list(levels)) for name, levels in f.rllib.items()},
            "repeat": 0,
            "seed": study.seed,
        }
    )
    return base


def _search_alg(study: Study) -> Any:
    if study.search.mode in {"grid", "random", "budget"}:
        return None
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    sampler = (
        optuna.samplers.QMCSampler(seed=study.seed, scramble=True)
        if study.search.mode == "qmc"
        else optuna.samplers.TPESampler(seed=study.seed)
    )
    return OptunaSearch(metric=study.search.metric, mode=study.search.metric_mode, sampler=sampler)


def _stop(study: Study) -> dict[str, float]:
    return study.stop.limits()


def _num_samples(study: Study) -> int:
    """Tune's ``num_samples``: once for a grid, the draws or the budget search's cap."""
    if study.search.mode == "grid":
        return 1
    if study.search.mode == "budget":
        return study.search.max_trials
    return study.search.num_samples


def check_placeable(study: Study, source: str = "") -> None:
    """Refuse, before any trial starts, a point the cluster can never place."""

    from memsweep.collect.cluster import cluster_nodes
    from memsweep.run.placement import bundles, trial_resources
    from memsweep.run.rllib_check import base_resources

    nodes = [n for n in cluster_nodes() if n.get("Alive")]
    node_cpus = [float(n.get("Resources", {}).get("CPU", 0.0)) for n in nodes]
    total = sum(node_cpus)
    biggest = max(node_cpus, default=0.0)
    points: list[TrialPoint] = study.points()
    where = f"{source}: " if source else ""
    base = base_resources(study)
    for point in points:
        cpus = [float(b.get("CPU", 0.0)) for b in bundles(trial_resources(study, point, base))]
        need = sum(cpus)
        if need > total + 1e-9 or max(cpus, default=0.0) > biggest + 1e-9:
            raise ClusterError(
                f"{where}the trial with num_workers={point.num_workers} needs {need:g} CPUs "
                f"(trainable {study.resources.cpus_per_trainable:g} + env runners at "
                f"{study.resources.cpus_per_env_runner:g} each), but the cluster has "
                f"{total:g} CPUs ({biggest:g} on its largest node). Lower "
                "resources.cpus_per_env_runner (memory is what is studied, not speed) or "
                "factors.num_workers."
            )


def _driver_env_vars() -> dict[str, str]:
    """``WORKER_ENV`` minus what a Ray job (``memsweep submit``) already sets: Ray refuses
    a ``ray.init`` runtime env that repeats one of the job's env vars."""
    job = json.loads(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR") or "{}")
    taken = (job.get("runtime_env") or {}).get("env_vars") or {}
    return {key: value for key, value in WORKER_ENV.items() if key not in taken}


def _init_ray(study: Study, address: str | None) -> bool:
    """Start (or join) Ray; returns True if this call started it."""
    import ray

    if ray.is_initialized():
        return False
    for key, value in WORKER_ENV.items():
        os.environ.setdefault(key, value)
    kwargs: dict[str, Any] = {
        "runtime_env": {"env_vars": _driver_env_vars()},
        "namespace": f"memsweep-{study.name}",
        "log_to_driver": True,
    }
    embedded = not address and not os.environ.get("RAY_ADDRESS")
    if address:
        kwargs["address"] = address
    else:
        # Embedded Ray: everything on loopback, dashboard included.
        kwargs.update(include_dashboard=True, dashboard_host="127.0.0.1")
    if embedded:
        # A Ray of its own: without "local", ray.init joins any cluster that `ray start`
        # left on this machine (a Ray job, `memsweep submit`, sets RAY_ADDRESS instead).
        kwargs["address"] = "local"
    try:
        with _loopback_only() if embedded else contextlib.nullcontext():
            ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ClusterError(f"Cannot start or reach Ray ({address or 'embedded'}): {exc}") from None
    return True


@contextlib.contextmanager
def _loopback_only() -> Iterator[None]:
    """While Ray starts inside, its servers listen on 127.0.0.1 only.

    Ray 2.60 binds its gRPC servers (GCS, raylet, every worker's) and agents to all
    interfaces unless the node's IP is 127.0.0.1, and turns a 127.0.0.1 given as
    ``_node_ip_address`` into the machine's outward IP; except on a one-machine setup
    (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, its macOS/Windows default), where the node
    IP is 127.0.0.1. That is asked for here; Ray reads it when ``ray.init`` starts the
    node (the processes it starts inherit it).
    """
    from ray._private import ray_constants

    key = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
    saved_env, saved_flag = os.environ.get(key), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[key] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        if saved_env is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = saved_env


def run_study(
    study: Study,
    *,
    storage: str | None = None,
    resume: bool = False,
    address: str | None = None,
    source: str = "",
    search_alg: Any = None,
    extra_stopper: Any = None,
    max_concurrent_trials: int | None = None,
) -> SweepOutcome:
    """Run ``study`` to the end; raises MemsweepError on refusal. Prints nothing itself
    (Tune prints its progress table); :mod:`memsweep.report.summary` reads the results.

    Applications on top of a sweep (:mod:`memsweep.budget`) pass their own Tune
    ``search_alg``, an ``extra_stopper`` combined with the study's stop rule, and
    ``max_concurrent_trials``.
    """
    # Tune's newer console output ignores a CLIReporter's columns; memsweep's table shows
    # env steps, buffer fill and memory per trial, so ask for the classic reporter.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Tune saves its experiment state (trial statuses, the callback's state) at most every
    # 10 s by default; a trial that finished since would be run again by --resume.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
    import ray
    from ray.tune import CheckpointConfig, CLIReporter, RunConfig, TuneConfig, Tuner
    from ray.tune.stopper import CombinedStopper

    from memsweep.collect.callback import MemoryCallback
    from memsweep.run.rllib_check import check_study
    from memsweep.run.trainable import trainable_for
    from memsweep.run.workarounds.tune import (
        SweepStopper,
        credentials_kept_from_trials,
        storage_errors_in_one_line,
        tensorboard_logger_without_torch,
        tracker_integrations_without_their_libraries,
        trial_state_encoding_that_does_not_grow,
        tune_survives_oom_kills,
    )

    check_study(study, source or study.name)
    tensorboard_logger_without_torch()
    tracker_integrations_without_their_libraries()
    trial_state_encoding_that_does_not_grow()
    uri = storage or study.storage_uri
    writer = ResultsWriter(uri)
    writer.write_text("study.yaml", yaml.safe_dump(study.model_dump(mode="json"), sort_keys=False))
    writer.write_text("versions.json", json.dumps(versions(), indent=2))
    started = time.time()
    we_started = _init_ray(study, address)
    try:
        check_placeable(study, source)
        callback = MemoryCallback.for_study(study, uri)
        reporter = CLIReporter(
            metric_columns={
                "training_iteration": "iter",
                keys.ENV_STEPS: "env steps",
                keys.REPLAY_SIZE: "in buffer",
                keys.PSS_MB: "PSS MB",
                keys.PEAK_MB: "peak MB (Σ PSS)",
            },
            parameter_columns={
                f"{prefix}{name}": label
                for name, label in (
                    ("replay_capacity", "capacity"),
                    ("num_workers", "workers"),
                    ("framework", "framework"),
                    # The config factors (rllib: keys, env_config.*), by their own names.
                    *((f"rllib/{name}", name) for name in study.factors.rllib),
                )
                for prefix in (["point/"] if study.search.mode == "grid" else [""])
            },
            max_report_frequency=30,
        )
        fs = writer.fs if is_remote(writer.uri) else None
        stopper: Any = SweepStopper(_stop(study), lambda: callback.collector_error is not None)
        if extra_stopper is not None:
            stopper = CombinedStopper(stopper, extra_stopper)
        run_config = RunConfig(
            name="tune",
            storage_path=writer.root,
            storage_filesystem=fs,
            stop=stopper,
            callbacks=[callback],
            progress_reporter=reporter,
            verbose=1,
            # Resume restarts unfinished trials from scratch: a memory trace does not
            # continue across a restart, and a DQN checkpoint would write its whole
            # replay buffer to disk.
            checkpoint_config=CheckpointConfig(checkpoint_at_end=False, checkpoint_frequency=0),
        )
        tune_dir = f"{writer.root}/tune"
        if resume:
            if not Tuner.can_restore(tune_dir, storage_filesystem=fs):
                raise MemsweepError(
                    f"Nothing to resume in {uri}: no Tune experiment at {tune_dir}."
                )
            # No param_space: Tune resumes the trials and the grid it saved, as they were
            # when the sweep started (a re-given one must have the very same keys, which
            # a newer memsweep's defaults can change).
            try:
                tuner = Tuner.restore(
                    tune_dir,
                    trainable=trainable_for(study),
                    resume_unfinished=True,
                    resume_errored=False,
                    restart_errored=False,
                    storage_filesystem=fs,
                )
            except (ValueError, TypeError, OSError) as exc:
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise MemsweepError(
                    f"Cannot resume the sweep in {uri}: {reason} Start it again in a new storage."
                ) from None
            # Tune unpickles the old RunConfig; give it this run's callback and reporter
            # (Tuner has no public setter for that in Ray 2.60; its RunConfig is mutable).
            internal = tuner._local_tuner
            if internal is None:  # Only under Ray Client, i.e. a ray:// address.
                raise ClusterError("--resume needs a Ray address, not a ray:// client address.")
            restored = internal.get_run_config()
            restored.callbacks = [callback]
            restored.progress_reporter = reporter
            restored.stop = run_config.stop
        else:
            tuner = Tuner(
                trainable_for(study),
                param_space=param_space(study),
                tune_config=TuneConfig(
                    num_samples=_num_samples(study),
                    search_alg=search_alg if search_alg is not None else _search_alg(study),
                    max_concurrent_trials=max_concurrent_trials
                    or study.resources.max_concurrent_trials
                    or None,
                    reuse_actors=False,
                ),
                run_config=run_config,
            )
        try:
            with (
                tune_survives_oom_kills(),
                storage_errors_in_one_line(),
                credentials_kept_from_trials(results_are_local=fs is None),
            ):
                grid = tuner.fit()
        finally:
            callback.close()
        failure = callback.collector_error
        if isinstance(failure, MemsweepError):
            raise failure  # It names the problem and the fix (a full disk, a lost bucket).
        if failure is not None:
            raise MemsweepError(f"Samples could not be written: {failure}")
        # Every writer has stopped: merge the sweep's part files (one per table per flush).
        compact_results(uri)
        errors = sum(1 for index in range(len(grid)) if grid[index].error is not None)
        trials = open_results(uri).table("trials")
        return SweepOutcome(
            storage=uri,
            num_trials=trials.num_rows,
            num_errors=errors,
            seconds=time.time() - started,
        )
    except SpecError:
        raise
    finally:
        if we_started:
            with contextlib.suppress(Exception):
                ray.shutdown()

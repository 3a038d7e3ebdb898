"""How a Tune sweep survives its trials' faults.

- One OOM-killed trial fails alone; the sweep goes on (:func:`tune_survives_oom_kills`).
- When memsweep can no longer keep what it measures (the results folder is full or
  gone), the whole sweep stops at once rather than running trials nobody records
  (:class:`SweepStopper`), and Tune's own complaints about that folder are one line
  each, not tracebacks (:func:`storage_errors_in_one_line`): memsweep ends with the
  message that says what to do.
- The driver's cloud credentials stay in the driver when the results are on a local
  disk (:func:`credentials_kept_from_trials`).
- The driver does not import PyTorch for Tune's TensorBoard logger
  (:func:`tensorboard_logger_without_torch`), nor MLflow, W&B or Aim for Tune's callback
  telemetry (:func:`tracker_integrations_without_their_libraries`), and does not grow
  by a set entry for every number every trial reports
  (:func:`trial_state_encoding_that_does_not_grow`).

**A Ray 2.60 bug worked around here.** Tune's actor manager
(``RayActorManager._actor_task_failed``) handles ``RayActorError`` and ``RayTaskError``
and raises ``RuntimeError("Caught unexpected exception: …")`` for anything else. When
Ray's memory monitor kills a trial's actor, the pending ``train`` call fails with
:class:`ray.exceptions.OutOfMemoryError`, which is neither: one OOM-killed trial ends
``Tuner.fit()``, and the sweep with it. Tune offers no hook to handle it (the controller
builds its actor manager itself), so :func:`tune_survives_oom_kills` wraps that one
method, for the duration of a sweep only, to hand Tune the error as the
``RayActorError`` it is (the trial's actor is dead). ``tests/test_faults.py`` keeps a
test that shows the upstream method still failing, so the wrapper can go once it passes.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ray.exceptions import RayActorError
from ray.tune.stopper import Stopper


def tensorboard_logger_without_torch() -> None:
    """Import tensorboardX here without letting it import PyTorch.

    Tune adds its TensorBoard logger (``TBXLoggerCallback``) to every run, in the driver;
    ``tensorboardX.writer`` imports ``torch`` when it is installed, only to accept torch
    tensors as values (``numpy_compatible``). Tune logs numbers, so torch (~250 MB of
    RSS) would sit in memsweep's driver, on the node it measures, for nothing. While
    tensorboardX is first imported, ``import torch`` fails as if torch were not
    installed (tensorboardX handles that); afterwards torch imports normally. No effect
    when torch or tensorboardX is already imported.
    """
    if "torch" in sys.modules or "tensorboardX" in sys.modules:
        return
    sys.modules["torch"] = None  # type: ignore[assignment]  # import torch: ImportError
    try:
        import tensorboardX  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        pass  # Tune then runs without its TensorBoard logger, as it does without it.
    finally:
        del sys.modules["torch"]


TRACKER_INTEGRATIONS: dict[str, tuple[str, ...]] = {
    "ray.air.integrations.mlflow": ("mlflow",),
    "ray.air.integrations.wandb": ("wandb",),
    "ray.tune.logger.aim": ("aim",),
}
"""Ray's tracker integration modules that Tune's callback telemetry imports, and the
libraries each imports at module level when installed (Ray 2.60)."""


def tracker_integrations_without_their_libraries() -> None:
    """Import Ray's MLflow, W&B and Aim integrations without their libraries.

    Whenever a run has callbacks (memsweep's own, always), ``tune.run`` records which
    kinds for Ray's usage telemetry (``ray.air._internal.usage._count_callbacks``) by
    importing those integrations to compare class names, and each imports its library
    when it is installed: with ``mlflow-skinny`` installed (memsweep's ``[mlflow]`` and
    ``[dev]`` extras) the driver's peak RSS during ``sweeps/examples/trackers.yaml`` was
    311 MB, and 274 MB without it (2026-11-30). memsweep's sweep driver passes Tune no
    tracker callback, so while those modules are first imported their libraries fail to
    import as if not installed; afterwards they import normally. In this process Ray's
    ``MLflowLoggerCallback``/``WandbLoggerCallback`` would then find no library: call
    this only in a driver that uses none (``memsweep run``; a user's own Tuner with
    :class:`memsweep.MemoryCallback` is left alone). No effect on a module already
    imported.
    """
    hidden = {
        library
        for module, libraries in TRACKER_INTEGRATIONS.items()
        if module not in sys.modules
        for library in libraries
        if library not in sys.modules
    }
    for library in hidden:
        sys.modules[library] = None  # type: ignore[assignment]  # import …: ImportError
    try:
        for module in TRACKER_INTEGRATIONS:
            with contextlib.suppress(ImportError):
                importlib.import_module(module)
    finally:
        for library in hidden:
            del sys.modules[library]


def trial_state_encoding_that_does_not_grow() -> None:
    """Stop the driver growing by ~0.1 MB per trial result while Tune saves its state.

    **A Ray 2.60 leak worked around here.** Tune saves each trial's metadata as JSON
    (``_TrainingRunMetadata.get_json_state``) after every new result, and that holds,
    for every numeric metric, the last 5 and last 10 values as ``deque`` objects, which
    JSON cannot encode: ``TuneFunctionEncoder.default`` pickles each, but first calls
    ``log_once(f"tune_func_encode:{str(obj)}")`` to gate one debug line, and
    ``log_once`` keeps every key it was given in a module-level set. The deque's text
    changes with every value, so each result adds two new strings per metric for the
    rest of the process: 102,000 strings, 28.9 MB, after 300 results of 170 metrics (an
    RLlib result has ~170; measured 2026-11-30). ``tests/run/test_placement.py`` shows
    the upstream encoder still growing (so this can go once it stops) and this one not.
    In memsweep's own driver, where Tune saves state every 2 s, tracemalloc saw these
    strings grow by ~0.6 MB a minute during a DQN trial (2026-11-30): ~36 MB an hour of
    sweep. The rest of the driver's slow growth (~2 MB a minute of RSS during the
    default sweep's trials) is elsewhere and not explained here.

    Here the encoder's ``log_once`` is keyed on the message alone (one debug line per
    process, as the message says nothing of the object); what Tune saves is unchanged.
    Idempotent; call it in a driver that runs Tune (``memsweep run``).
    """
    from ray.tune.utils import serialization
    from ray.util.debug import log_once

    # setattr/getattr: serialization imports log_once without re-exporting it.
    if getattr(getattr(serialization, "log_once", None), "memsweep_once_per_message", False):
        return

    def once_per_message(key: str) -> bool:
        return log_once(key.split(":", 1)[0])

    once_per_message.memsweep_once_per_message = True  # type: ignore[attr-defined]
    setattr(serialization, "log_once", once_per_message)  # noqa: B010


class TrialOutOfMemoryError(RayActorError):
    """Ray's ``OutOfMemoryError`` for a trial's actor, as the ``RayActorError`` that Tune
    handles; the message is Ray's, unchanged."""

    def __init__(self, message: str = "") -> None:
        super().__init__(error_msg=message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (TrialOutOfMemoryError, (self.error_msg,))


@contextlib.contextmanager
def tune_survives_oom_kills() -> Iterator[None]:
    """While inside, an OOM-killed trial fails alone instead of ending ``Tuner.fit()``."""
    from ray.air.execution._internal.actor_manager import RayActorManager
    from ray.exceptions import OutOfMemoryError

    original = RayActorManager._actor_task_failed

    def _actor_task_failed(self: Any, tracked_actor_task: Any, exception: Exception) -> None:
        if isinstance(exception, OutOfMemoryError) and not isinstance(exception, RayActorError):
            exception = TrialOutOfMemoryError(str(exception))
        original(self, tracked_actor_task, exception)

    RayActorManager._actor_task_failed = _actor_task_failed  # type: ignore[method-assign]
    try:
        yield
    finally:
        RayActorManager._actor_task_failed = original  # type: ignore[method-assign]


survive_oom_kills = tune_survives_oom_kills
"""Public name (``memsweep.survive_oom_kills``): wrap your own ``tuner.fit()`` in it::

    with memsweep.survive_oom_kills():
        results = tuner.fit()

While inside, a trial whose process Ray's memory monitor kills fails alone, as an actor
error (``MemoryCallback`` records it ``oom_killed``); the other trials run. Without it
Ray 2.60 Tune ends the whole ``fit()`` with ``RuntimeError: Caught unexpected exception``.
Restored on exit; safe to nest in one thread."""


class SweepStopper(Stopper):
    """Tune's ``stop={key: limit}`` (a trial stops once ``result[key] >= limit``), plus
    "stop every trial" once ``stop_all_when()`` says so."""

    def __init__(self, limits: Mapping[str, float], stop_all_when: Callable[[], bool]) -> None:
        self.limits = dict(limits)
        self._stop_all_when = stop_all_when

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        from ray.tune.utils import flatten_dict

        # Tune's own dict criteria look at the flattened result ("a/b" for {"a": {"b"}}).
        flat = flatten_dict(result)
        return any(
            flat.get(key) is not None and flat[key] >= limit for key, limit in self.limits.items()
        )

    def stop_all(self) -> bool:
        return bool(self._stop_all_when())


TUNE_STORAGE_LOGGERS = ("ray.tune.execution.experiment_state", "ray.train._internal.syncer")
"""Where Tune logs (with a traceback) that it could not save to the results folder."""


class _OneLine(logging.Filter):
    """An OSError's traceback in a log record → its reason, on the record's one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, OSError):
            reason = os.strerror(error.errno) if error.errno else str(error).splitlines()[0]
            record.msg = f"{record.getMessage().rstrip(': ')}: {reason}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


@contextlib.contextmanager
def storage_errors_in_one_line() -> Iterator[None]:
    """While inside, Tune's failures to write the results folder log one line each."""
    one_line = _OneLine()
    loggers = [logging.getLogger(name) for name in TUNE_STORAGE_LOGGERS]
    for logger in loggers:
        logger.addFilter(one_line)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(one_line)


CLOUD_CREDENTIALS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SECURITY_TOKEN",
    "AWS_SESSION_TOKEN",
)
"""What Ray Tune 2.60 copies from the driver's environment into every trial's runtime
env (``ray.tune.execution.class_cache.ENV_VARS_TO_PROPAGATE``), so that trials can
write to S3. Ray's runtime-env agent then logs that runtime env verbatim, credentials
included, in ``runtime_env_agent.log`` on every node, and the actor table shows it."""


@contextlib.contextmanager
def credentials_kept_from_trials(results_are_local: bool) -> Iterator[None]:
    """While inside, and only when the results go to a local disk (no trial then needs
    them), the driver's AWS credentials are out of its environment, so Tune does not hand
    them to the trials (nor Ray log them). Restored on exit."""
    saved = {
        key: os.environ.pop(key)
        for key in CLOUD_CREDENTIALS
        if results_are_local and key in os.environ
    }
    try:
        yield
    finally:
        os.environ.update(saved)

"""What memsweep reads from Tune: a trial's result (env steps, replay fill, memory keys),
its config described as trials-table columns, and the end of its error file.

Tune hands callbacks its own untyped objects; this module turns them into the facts the
:class:`~memsweep.collect.recorder.SweepRecorder` records, so the callback's hooks only
hand them on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memsweep import result_keys as keys
from memsweep.errors import MemsweepError
from memsweep.result_keys import TuneConfig
from memsweep.spec import Study, point_from_config

REPLAY_SIZE_KEYS = (keys.REPLAY_SIZE, "replay_size", "replay_buffer/size")
"""Where a result's replay-buffer fill (transitions) is looked for."""

Describe = Callable[[TuneConfig], dict[str, Any] | None]
"""A trial's config → its trials-table columns (memsweep's own sweeps), or None."""


@dataclass(frozen=True)
class TuneTrial:
    """The parts of a Tune ``Trial`` memsweep uses."""

    trial_id: str
    config: TuneConfig
    actor: Any = None
    """The trial's trainable actor handle (Ray's ``ActorHandle``), None if not started."""
    error_file: str | None = None
    """Tune's error file of a failed trial."""

    @classmethod
    def of(cls, trial: Any) -> TuneTrial:
        """From Tune's ``Trial`` (its actor and error file where Ray 2.60 keeps them)."""
        actor = getattr(getattr(trial, "temporary_state", None), "ray_actor", None)
        error_file = getattr(trial, "error_file", None) or getattr(
            getattr(trial, "run_metadata", None), "error_filename", None
        )
        return cls(trial.trial_id, trial.config, actor, error_file)

    def error_text(self, limit: int = 200_000) -> str:
        """The end of the trial's error file (whole enough for Ray's OOM report)."""
        try:
            if not self.error_file:
                return ""
            return Path(self.error_file).read_text(encoding="utf-8", errors="replace")[-limit:]
        except OSError:
            return ""


@dataclass(frozen=True)
class StudyTrials:
    """A memsweep trainable's config → its study and factor columns; None for another
    trainable's (sampled and attributed all the same)."""

    study: Study

    def __call__(self, config: TuneConfig) -> dict[str, Any] | None:
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


def lookup(result: Mapping[str, Any], names: tuple[str, ...]) -> int | None:
    """The first of ``names`` that ``result`` holds as a number, as an int; a name with
    ``/`` is also looked up nested (RLlib reports ``env_runners: {...}``)."""
    for name in names:
        value: Any = result.get(name)
        if value is None and "/" in name:
            value = result
            for part in name.split("/"):
                value = value.get(part) if isinstance(value, Mapping) else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return int(value)
    return None

"""Results folders damaged the ways disks and users damage them, for the no-traceback tests.

:func:`damage_results` changes a copy of a valid results folder in place; :data:`DAMAGE`
names every way it knows (``"none"`` leaves the folder as it is).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq

DAMAGE = (
    "none",
    "truncate_trials",
    "truncate_sample",
    "garbage_part",
    "no_trials",
    "no_samples",
    "samples_is_file",
    "trials_is_folder",
    "bad_versions",
    "future_version",
    "bad_study",
    "empty_trials",
    "drop_status",
    "empty",
)
"""Every ``how`` :func:`damage_results` takes."""


def damage_results(folder: Path, how: str) -> None:
    """Damage the results folder ``folder`` in place, one way of :data:`DAMAGE`.

    Raises ValueError for a ``how`` not in :data:`DAMAGE`.
    """
    trials = folder / "trials.parquet"
    if how == "none":
        return
    if how == "truncate_trials":
        trials.write_bytes(trials.read_bytes()[: trials.stat().st_size // 2])
    elif how == "truncate_sample":
        first = sorted((folder / "samples").glob("*.parquet"))[0]
        first.write_bytes(first.read_bytes()[:100])
    elif how == "garbage_part":
        (folder / "samples" / "part-zz.parquet").write_bytes(b"garbage")
    elif how == "no_trials":
        trials.unlink()
    elif how == "no_samples":
        shutil.rmtree(folder / "samples")
    elif how == "samples_is_file":
        shutil.rmtree(folder / "samples")
        (folder / "samples").write_text("x")
    elif how == "trials_is_folder":
        trials.unlink()
        trials.mkdir()
    elif how == "bad_versions":
        (folder / "versions.json").write_text("{not json")
    elif how == "future_version":
        (folder / "versions.json").write_text('{"schema_version": 99}')
    elif how == "bad_study":
        (folder / "study.yaml").write_text(": : :\n[")
    elif how == "empty_trials":
        pq.write_table(pq.read_table(trials).slice(0, 0), trials)
    elif how == "drop_status":
        pq.write_table(pq.read_table(trials).drop(["status"]), trials)
    elif how == "empty":
        shutil.rmtree(folder)
        folder.mkdir()
    else:
        raise ValueError(f"unknown damage {how!r}; one of {', '.join(DAMAGE)}")

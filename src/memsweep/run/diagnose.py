"""``memsweep diagnose``: rerun one trial of a results folder with allocation tracking in
one role's processes, and say which code allocated what grew.

The trial's point is rebuilt from ``trials.parquet`` (built-in factor columns, seed and
repeat, and every other factor from ``factors_json``) and the sweep from ``study.yaml``;
it runs again as a one-trial sweep of its own (:func:`memsweep.run.sweep.run_study`,
results under ``<out>/rerun``, measured like any sweep) with :data:`~memsweep.run.profile.PROFILE_ENV`
set, so the chosen role's processes track their allocations (:mod:`memsweep.run.profile`):
``trainable`` (the algorithm's main process, where the env runs too when the trial has
no remote env runners) or ``env_runner`` (every remote env runner, summed).

With memray (the ``diagnose`` extra) the report is read from memray's captures: the
allocations made after the algorithm was built and still alive when tracking stopped
(memray's "leaks" view: what training grew and kept), summed by the Python line that
made them, largest first, and memray's own flamegraph of them (``memray flamegraph
--leaks``). Without memray (or with ``tracker="tracemalloc"``), the standard library's
tracemalloc takes a snapshot when tracking starts and another when it stops, and the
report is the lines whose allocations grew between the two (``Snapshot.compare_to``),
largest growth first; there is no flamegraph then.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from memsweep.errors import DataError, MemsweepError, SpecError
from memsweep.run.profile import PROFILE_ENV, TRACKERS
from memsweep.spec import Study, TrialPoint
from memsweep.store import open_results
from memsweep.units import format_bytes

TRACKED_ROLES = ("trainable", "env_runner")
"""Roles whose process ``diagnose`` can track."""

BUILT_IN_FACTORS = ("replay_capacity", "model", "num_workers", "framework")


@dataclass(frozen=True)
class AllocationSite:
    """One Python line and the bytes its allocations still held when tracking stopped."""

    function: str
    """The function (memray), or the line's source text (tracemalloc records no name)."""
    file: str
    line: int
    held_bytes: int
    """Bytes allocated at this line (its own frame innermost) and not freed (memray), or
    by which its live allocations grew between the two snapshots (tracemalloc)."""

    allocations: int
    """How many of those allocations there were (tracemalloc: how many more)."""


@dataclass(frozen=True)
class Diagnosis:
    trial_id: str
    role: str
    tracker: str
    """``memray`` or ``tracemalloc``."""

    folder: Path
    """Where the captures, the flamegraph and ``sites.md`` are."""

    rerun: str
    """The rerun's results folder (a one-trial sweep: ``memsweep analyze`` reads it)."""

    captures: tuple[Path, ...]
    """One per tracked process (memray ``.bin`` or tracemalloc ``.json``)."""

    flamegraph: Path | None
    """memray's leaks flamegraph (HTML) of the largest capture; None with tracemalloc."""

    sites: tuple[AllocationSite, ...]
    """Summed over the role's tracked processes; largest held bytes first."""

    def heading(self) -> str:
        processes = f"{len(self.captures)} {self.role} process(es)"
        if self.tracker == "memray":
            return (
                f"memsweep diagnose: trial {self.trial_id}, role {self.role}: allocations "
                f"still held when tracking stopped, by the line that made them, over "
                f"{processes} (memray {_memray_version()})"
            )
        return (
            f"memsweep diagnose: trial {self.trial_id}, role {self.role}: allocations that "
            f"grew between two tracemalloc snapshots (end of set-up, clean-up), by line, over "
            f"{processes}"
        )

    def text(self, top: int = 10) -> str:
        lines = [self.heading()]
        for site in self.sites[:top]:
            lines.append(
                f"  {format_bytes(site.held_bytes):>9} in {site.allocations:>7,} allocations  "
                f"{site.function} ({site.file}:{site.line})"
            )
        if self.flamegraph is not None:
            lines.append(f"flamegraph: {self.flamegraph}")
        lines.append(f"all sites: {self.folder / 'sites.md'}; the rerun's samples: {self.rerun}")
        return "\n".join(lines)


def _memray_version() -> str:
    from importlib.metadata import version

    return version("memray")


def trial_point(study: Study, row: dict[str, Any]) -> TrialPoint:
    """The :class:`TrialPoint` of a ``trials.parquet`` row of ``study``'s sweep."""
    factors = json.loads(row.get("factors_json") or "{}")
    models = {model.label: model for model in study.factors.model}
    label = str(factors.get("model", row.get("model")))
    if label not in models:
        raise DataError(
            f"trial {row['trial_id']}: model {label!r} is not one of study.yaml's "
            f"{sorted(models)}; diagnose needs the sweep that made the trial"
        )
    return TrialPoint(
        replay_capacity=int(factors.get("replay_capacity", row["replay_capacity"])),
        model=models[label],
        num_workers=int(factors.get("num_workers", row["num_workers"])),
        framework=factors.get("framework", row["framework"]),
        rllib={k: v for k, v in factors.items() if k not in BUILT_IN_FACTORS},
        repeat=int(row.get("repeat") or 0),
        seed=int(row.get("seed") or 0),
    )


def rerun_study(study: Study, point: TrialPoint, storage: str) -> Study:
    """``study`` narrowed to the one trial at ``point``, stored in ``storage``."""
    from memsweep.spec import Factors, SearchSpec

    factors = Factors(
        replay_capacity=(point.replay_capacity,),
        model=(point.model,),
        num_workers=(point.num_workers,),
        framework=(point.framework,),
        rllib={key: (value,) for key, value in point.rllib.items()},
    )
    return study.model_copy(
        update={
            "name": f"{study.name}-diagnose"[:80],
            "factors": factors,
            "search": SearchSpec(),
            "repeats": 1,
            "seed": point.seed,
            "storage": storage,
        }
    )


def load_trial(results_uri: str, trial_id: str) -> tuple[Study, TrialPoint]:
    """The sweep and point of ``trial_id``; DataError naming the known trials if absent."""
    results = open_results(results_uri)
    text = results.text("study.yaml")
    if text is None:
        raise DataError(
            f"{results_uri} has no study.yaml: diagnose reruns memsweep's own trials only"
        )
    study = Study.model_validate(yaml.safe_load(text))
    rows = results.table("trials").to_pylist()
    row = next((r for r in rows if r["trial_id"] == trial_id), None)
    if row is None:
        known = ", ".join(sorted(r["trial_id"] for r in rows)[:12])
        raise SpecError(f"no trial {trial_id!r} in {results_uri}; its trials: {known}")
    return study, trial_point(study, row)


def check_role(role: str, point: TrialPoint, trial_id: str) -> None:
    """SpecError unless ``role`` has a process in the trial that diagnose can track."""
    if role == "env_runner" and point.num_workers == 0:
        raise SpecError(
            f"trial {trial_id} has no env_runner process (num_workers 0: its env runs in "
            "the trainable); use --role trainable"
        )
    if role not in TRACKED_ROLES:
        raise SpecError(
            f"--role {role}: diagnose tracks {', '.join(TRACKED_ROLES)} only; the env runs "
            "in the env runners (or in the trainable when num_workers is 0)"
        )


def memray_installed() -> bool:
    try:
        import memray  # noqa: F401
    except ImportError:
        return False
    return True


def diagnose_trial(
    results_uri: str, trial_id: str, role: str, out: Path, tracker: str | None = None
) -> Diagnosis:
    """Rerun ``trial_id`` with ``role``'s processes tracked; write the report into ``out``.

    ``tracker``: ``memray`` or ``tracemalloc``; None picks memray when it is installed,
    else tracemalloc. Raises SpecError (unknown trial, a role with no process or one that
    cannot be tracked, an unknown tracker, memray asked for and not installed), DataError
    (not a memsweep sweep) or MemsweepError (no capture written). Takes as long as the
    trial did."""
    study, point = load_trial(results_uri, trial_id)
    check_role(role, point, trial_id)
    if tracker is None:
        tracker = "memray" if memray_installed() else "tracemalloc"
    if tracker not in TRACKERS:
        raise SpecError(f"--tracker {tracker}: use one of {', '.join(TRACKERS)}")
    if tracker == "memray" and not memray_installed():
        raise SpecError(
            "--tracker memray needs memray: pip install 'memsweep[diagnose]' (or memray==1.20.0), "
            "or use --tracker tracemalloc"
        )
    from memsweep.run.sweep import run_study

    out = out.resolve()
    captures_dir = out / "captures"
    storage = str(out / "rerun")
    os.environ[PROFILE_ENV] = json.dumps(
        {"role": role, "dir": str(captures_dir), "tracker": tracker}
    )
    try:
        run_study(rerun_study(study, point, storage), source=f"diagnose {trial_id}")
    finally:
        os.environ.pop(PROFILE_ENV, None)
    bins = sorted(captures_dir.glob(f"{role}-*.bin"))
    reports = sorted(captures_dir.glob(f"{role}-*.tracemalloc.json"))
    # A process without memray falls back to tracemalloc by itself: report what was written.
    used = "memray" if bins else "tracemalloc"
    captures = tuple(bins or reports)
    if not captures:
        raise MemsweepError(
            f"the rerun of {trial_id} wrote no {tracker} capture for its {role} into "
            f"{captures_dir}: did the trial fail? its results: {storage}"
        )
    flamegraph: Path | None = None
    if used == "memray":
        sites = merged_sites([held_sites(c) for c in captures])
        flamegraph = out / "flamegraph.html"
        largest = max(captures, key=lambda c: c.stat().st_size)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "memray",
                "flamegraph",
                "--leaks",
                "-f",
                "-o",
                str(flamegraph),
                str(largest),
            ],
            check=True,
            capture_output=True,
        )
    else:
        sites = merged_sites([grown_sites(c) for c in captures])
    diagnosis = Diagnosis(trial_id, role, used, out, storage, captures, flamegraph, sites)
    (out / "sites.md").write_text(_sites_markdown(diagnosis))
    return diagnosis


def merged_sites(per_process: list[tuple[AllocationSite, ...]]) -> tuple[AllocationSite, ...]:
    """Sites of several processes of one role, summed per line; largest first."""
    held: dict[tuple[str, str, int], list[int]] = defaultdict(lambda: [0, 0])
    for sites in per_process:
        for site in sites:
            key = (site.function, site.file, site.line)
            held[key][0] += site.held_bytes
            held[key][1] += site.allocations
    merged = [
        AllocationSite(function, file, line, size, count)
        for (function, file, line), (size, count) in held.items()
    ]
    return tuple(sorted(merged, key=lambda s: -s.held_bytes))


def held_sites(capture: Path) -> tuple[AllocationSite, ...]:
    """Allocations of a memray capture not freed when tracking stopped, summed by the
    innermost Python frame that made them; largest first."""
    from memray import FileReader

    held: dict[tuple[str, str, int], list[int]] = defaultdict(lambda: [0, 0])
    for record in FileReader(capture).get_leaked_allocation_records(merge_threads=True):
        stack = record.stack_trace()
        key = stack[0] if stack else ("<no Python frame>", "", 0)
        held[key][0] += record.size
        held[key][1] += record.n_allocations
    sites = [
        AllocationSite(function, file, int(line), size, count)
        for (function, file, line), (size, count) in held.items()
    ]
    return tuple(sorted(sites, key=lambda s: -s.held_bytes))


def grown_sites(report: Path) -> tuple[AllocationSite, ...]:
    """The lines of a tracemalloc report (:mod:`memsweep.run.profile`) whose allocations
    grew between its two snapshots; largest growth first. The function is the line's
    source text (tracemalloc records file and line only)."""
    import linecache

    rows = json.loads(report.read_text())
    sites = [
        AllocationSite(
            linecache.getline(row["file"], row["line"]).strip() or "?",
            row["file"],
            int(row["line"]),
            int(row["size_diff_bytes"]),
            int(row["count_diff"]),
        )
        for row in rows
    ]
    return tuple(sorted(sites, key=lambda s: -s.held_bytes))


def _sites_markdown(diagnosis: Diagnosis) -> str:
    names = ", ".join(f"`{c.name}`" for c in diagnosis.captures)
    if diagnosis.tracker == "memray":
        what = (
            "Memory allocated while the rerun's trial trained (after its algorithm was built) "
            "and still held when tracking stopped, by the Python line that allocated it "
            f"(innermost frame), from memray {_memray_version()}'s captures {names}, summed "
            "over the role's processes. A line that keeps what it allocates on every step is "
            "at the top. Flamegraph: `flamegraph.html`."
        )
        head = "| held | allocations | function | file:line |"
    else:
        what = (
            "Growth of live allocations between two tracemalloc snapshots of the rerun's "
            "trial (one when its algorithm was built, one in its clean-up), by the Python "
            f"line that allocated them, from {names}, summed over the role's processes. A "
            "line that keeps what it allocates on every step is at the top. The second "
            "column is the line's source (tracemalloc records no function name)."
        )
        head = "| grew by | more allocations | source | file:line |"
    lines = [
        f"# Allocation sites: trial {diagnosis.trial_id}, {diagnosis.role}",
        "",
        what,
        "",
        head,
        "|---:|---:|---|---|",
    ]
    lines += [
        f"| {format_bytes(s.held_bytes)} | {s.allocations:,} | `{s.function}` | `{s.file}:{s.line}` |"
        for s in diagnosis.sites[:50]
    ]
    return "\n".join(lines) + "\n"

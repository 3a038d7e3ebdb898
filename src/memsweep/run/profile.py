"""Allocation tracking inside one role's processes, for ``memsweep diagnose``.

``memsweep diagnose`` reruns one trial with :data:`PROFILE_ENV` in the job's environment
(a JSON object: ``{"role": "env_runner", "dir": "/abs/folder", "tracker": "memray"}``).
memsweep's trainable calls :func:`start_in` once its algorithm is built, and in its
clean-up :func:`stop_in` before the algorithm stops its env runners and :func:`stop` after
(so what the algorithm frees when it stops is not reported): what is still held at the
end was allocated by training and kept. Role
``trainable`` is tracked in the trainable's own process; role ``env_runner`` in every
remote env runner, reached through RLlib's ``EnvRunnerGroup.foreach_env_runner`` (the
settings travel as the call's argument, so a runner on another node needs no
environment variable). Tracking is started inside the tracked process itself, so no
debugger is needed: ``memray attach`` injects itself through gdb/lldb and needs ptrace
rights that containers often withhold, and the algorithm kills its env runners
(``ray.kill``) when it stops, which would cut an attached or unstopped capture short.

Two trackers:

- ``memray``: a ``memray.Tracker`` writing ``<dir>/<role>-<pid>.bin`` (read with memray's
  leaks view: allocations made while tracking and not freed by its end), tracing
  Python's own allocator object by object (memray's ``trace_python_allocators``), so
  memory pymalloc keeps for reuse is not reported as held;
- ``tracemalloc`` (the standard library; where memray is not installed in the tracked
  process, or asked for): a snapshot when tracking starts and another when it stops,
  compared by line (``Snapshot.compare_to(…, "lineno")``); the lines whose allocations
  grew are written to ``<dir>/<role>-<pid>.tracemalloc.json`` (a list of objects
  ``{"file", "line", "size_diff_bytes", "count_diff", "size_bytes", "count"}``, largest
  growth first, at most :data:`TRACEMALLOC_TOP`).

Outside a diagnose run every function does nothing.
"""

from __future__ import annotations

import json
import os
import tracemalloc
from functools import partial
from pathlib import Path
from typing import Any

PROFILE_ENV = "MEMSWEEP_PROFILE"
"""Environment variable naming the role to track, the folder for its captures and the
tracker (``memray`` or ``tracemalloc``)."""

TRACKERS = ("memray", "tracemalloc")

TRACEMALLOC_TOP = 200
"""Lines written per tracemalloc report (largest growth first)."""

_tracking: list[Any] = []
"""This process's active tracking: a memray Tracker, or ``(role, folder, snapshot)``."""


def settings() -> dict[str, str] | None:
    """The diagnose run's settings from :data:`PROFILE_ENV`, or None outside one."""
    raw = os.environ.get(PROFILE_ENV)
    return json.loads(raw) if raw else None


def start(role: str, wanted: dict[str, str] | None = None) -> str | None:
    """Begin tracking this process's allocations if the diagnose run asks for ``role``.

    ``wanted``: the run's settings (default: from :data:`PROFILE_ENV`). Returns the
    tracker started (``memray`` falls back to ``tracemalloc`` where memray does not
    import), or None."""
    wanted = wanted if wanted is not None else settings()
    if not wanted or wanted.get("role") != role or _tracking:
        return None
    folder = Path(wanted["dir"])
    folder.mkdir(parents=True, exist_ok=True)
    tracker = wanted.get("tracker", "memray")
    if tracker == "memray":
        try:
            import memray
        except ImportError:
            tracker = "tracemalloc"
        else:
            # trace_python_allocators: record each pymalloc object, not pymalloc's 1 MiB
            # arenas; otherwise an arena mapped while a line runs is "held" by that line
            # (a planted 24.6 MB leak once read 25.7 MB: its line got an arena).
            capture = memray.Tracker(
                folder / f"{role}-{os.getpid()}.bin",
                native_traces=False,
                trace_python_allocators=True,
            )
            capture.__enter__()
            _tracking.append(capture)
            return tracker
    tracemalloc.start(1)
    _tracking.append((role, folder, tracemalloc.take_snapshot()))
    return tracker


def stop() -> None:
    """End tracking and write its capture or report (nothing if not tracking)."""
    while _tracking:
        active = _tracking.pop()
        if isinstance(active, tuple):
            role, folder, first = active
            last = tracemalloc.take_snapshot()
            tracemalloc.stop()
            _write_growth(first, last, folder / f"{role}-{os.getpid()}.tracemalloc.json")
        else:
            active.__exit__(None, None, None)


def _write_growth(first: tracemalloc.Snapshot, last: tracemalloc.Snapshot, path: Path) -> None:
    ignore = [
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, __file__),
    ]
    grown = [
        stat
        for stat in last.filter_traces(ignore).compare_to(first.filter_traces(ignore), "lineno")
        if stat.size_diff > 0
    ]
    rows = [
        {
            "file": stat.traceback[0].filename,
            "line": stat.traceback[0].lineno,
            "size_diff_bytes": stat.size_diff,
            "count_diff": stat.count_diff,
            "size_bytes": stat.size,
            "count": stat.count,
        }
        for stat in grown[:TRACEMALLOC_TOP]
    ]
    path.write_text(json.dumps(rows, indent=1))


def _start_in_runner(_runner: Any, role: str, wanted: dict[str, str]) -> str | None:
    return start(role, wanted)


def _stop_in_runner(_runner: Any) -> None:
    stop()


def start_in(algo: Any) -> None:
    """In the trainable, its algorithm built: start tracking in the trainable's process
    (role ``trainable``) or in each remote env runner (role ``env_runner``)."""
    wanted = settings()
    if not wanted:
        return
    start("trainable", wanted)
    if wanted.get("role") == "env_runner":
        algo.env_runner_group.foreach_env_runner(
            partial(_start_in_runner, role="env_runner", wanted=wanted), local_env_runner=False
        )


def stop_in(algo: Any) -> None:
    """In the trainable's clean-up, before the algorithm stops (and kills its env
    runners): end tracking in the env runners, so their captures are complete. The
    trainable's own tracking ends with :func:`stop` after the algorithm stopped."""
    wanted = settings()
    if wanted and wanted.get("role") == "env_runner" and algo is not None:
        algo.env_runner_group.foreach_env_runner(_stop_in_runner, local_env_runner=False)

"""Allocation tracking inside one role's process, for ``memsweep diagnose``.

``memsweep diagnose`` reruns one trial with :data:`PROFILE_ENV` in the job's environment
(a JSON object: ``{"role": "trainable", "dir": "/abs/folder"}``). A memsweep process of
that role calls :func:`start` once it is built and :func:`stop` as its last work (the
trainable: at the end of its set-up, once the algorithm is built, and in its clean-up),
so what is still held at the end was allocated by training and kept. :func:`start` enters a ``memray.Tracker`` in the
process itself, so no debugger is needed (``memray attach`` injects itself through
gdb/lldb and needs ptrace rights that containers often withhold); the capture is
``<dir>/<role>-<pid>.bin``. Outside a diagnose run, or without memray, both do nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

PROFILE_ENV = "MEMSWEEP_PROFILE"
"""Environment variable naming the role to track and the folder for its capture."""

_tracker: list[Any] = []


def start(role: str) -> None:
    """Begin tracking this process's allocations if the diagnose run asks for ``role``."""
    raw = os.environ.get(PROFILE_ENV)
    if not raw or _tracker:
        return
    wanted = json.loads(raw)
    if wanted.get("role") != role:
        return
    try:
        import memray
    except ImportError:
        return
    folder = Path(wanted["dir"])
    folder.mkdir(parents=True, exist_ok=True)
    tracker = memray.Tracker(folder / f"{role}-{os.getpid()}.bin", native_traces=False)
    tracker.__enter__()
    _tracker.append(tracker)


def stop() -> None:
    """End tracking and close the capture file (nothing if not tracking)."""
    while _tracker:
        _tracker.pop().__exit__(None, None, None)

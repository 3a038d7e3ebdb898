"""Output folders checked before the work that fills them, so a bad ``--out`` answers at
once in one line instead of in a traceback after the whole analysis has run."""

from __future__ import annotations

import tempfile
from pathlib import Path

from memsweep.errors import OutputError


def writable_folder(folder: Path, flag: str = "--out") -> Path:
    """Create ``folder`` (and its parents) if missing and prove it takes a file.

    Raises :class:`~memsweep.errors.OutputError` (exit 5) naming the path and the fix when
    ``folder`` or a parent is a file, the file system refuses it (``/proc``, read-only, no
    permission) or a name is too long. Returns ``folder`` unchanged.
    """
    for part in (folder, *folder.parents):
        if part.exists() and not part.is_dir():
            raise OutputError(
                f"{flag} {folder}: {part} is a file, not a folder: give a folder path "
                "(it is created if missing)"
            )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".memsweep-write-check-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise OutputError(
            f"{flag} {folder}: cannot write there ({reason}): give a folder you can write to"
        ) from None
    return folder

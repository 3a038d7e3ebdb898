"""The only command line: :func:`~memsweep.cli.main.main` and one module per command."""

from __future__ import annotations

from memsweep.cli.main import entry, main

__all__ = ["entry", "main"]

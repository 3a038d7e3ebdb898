"""``python -m memsweep``: the same as the ``memsweep`` command."""

from memsweep.cli import entry

entry()

"""``python -m memsweep.analyze …``: an alias of ``memsweep analyze …``."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from memsweep.cli.main import main as cli_main

    return cli_main(["analyze", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())

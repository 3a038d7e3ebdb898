"""``python -m memsweep.analyze [report] RESULTS`` and ``… predict RESULTS --flags``.

``main(argv) -> int`` returns the exit code. Expected failures (not a sweep folder, an
empty dataset, a bad flag value) are :class:`~memsweep.errors.MemsweepError`s, printed
as one line on stderr with their exit code, never as a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

import duckdb

from memsweep.analyze.commands import COMMANDS
from memsweep.errors import DataError, MemsweepError

PROG = "python -m memsweep.analyze"


class _Parser(argparse.ArgumentParser):
    """argparse that raises a one-line error instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise MemsweepError(f"{message} (see {self.prog} --help)")


def get_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description=(
            "Memory-growth models of a memsweep sweep: per-trial phases, per-factor fits, "
            "predictions and leak verdicts. Without a subcommand: report."
        ),
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in COMMANDS.items():
        child = sub.add_parser(name, help=command.help, description=command.help)
        command.prepare_parser(child)
        child.set_defaults(entry=command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] not in COMMANDS and args_list[0] not in ("-h", "--help"):
        args_list.insert(0, "report")
    try:
        parser = get_parser()
        args = parser.parse_args(args_list)
        return int(args.entry.run(args, parser))
    except MemsweepError as exc:
        message = " ".join(str(exc).split())
        print(f"memsweep analyze: {message}", file=sys.stderr)
        return exc.exit_code
    except duckdb.Error as exc:
        # A damaged Parquet part (a truncated copy, a disk error) surfaces in duckdb.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(
            f"memsweep analyze: cannot read the sample data ({first}); a Parquet file in "
            "the results folder is damaged: move it aside and run again",
            file=sys.stderr,
        )
        return DataError.exit_code
    except KeyboardInterrupt:
        print("memsweep analyze: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""``memsweep``: the one command line, its commands in the order of a workflow.

``main(argv) -> int`` returns the exit code; an expected failure is a
:class:`~memsweep.errors.MemsweepError`, printed as one line on stderr with its exit code.
``python -m memsweep.analyze …`` is the same as ``memsweep analyze …``.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence

from memsweep import __version__
from memsweep.cli.analyze import COMMANDS as ANALYZE_COMMANDS
from memsweep.cli.analyze import AnalyzeCommand, with_default_command
from memsweep.cli.claims import ClaimsCommand
from memsweep.cli.command import Command, Parser, add_commands
from memsweep.cli.compact import CompactCommand
from memsweep.cli.compare import CompareCommand
from memsweep.cli.diagnose import DiagnoseCommand
from memsweep.cli.export_mlflow import ExportMlflowCommand
from memsweep.cli.run import RunCommand
from memsweep.cli.submit import StatusCommand, StopCommand, SubmitCommand
from memsweep.cli.validate import ValidateCommand
from memsweep.cli.watch import WatchCommand
from memsweep.errors import EXIT_CODES, MemsweepError, UsageError

DEBUG_ENV = "MEMSWEEP_DEBUG"
"""Set to 1 to print the traceback of an internal error (a bug) besides its one line."""

REPORT_HINT = "file an issue with the command line and that traceback"
"""What to do with an internal error."""

INTERNAL_ERROR = 70
"""Exit code of an unexpected exception (``EX_SOFTWARE`` of sysexits.h)."""

COMMANDS: dict[str, Command] = {
    "validate": ValidateCommand(),
    "run": RunCommand(),
    "submit": SubmitCommand(),
    "status": StatusCommand(),
    "stop": StopCommand(),
    "watch": WatchCommand(),
    "compact": CompactCommand(),
    "analyze": AnalyzeCommand(),
    "compare": CompareCommand(),
    "diagnose": DiagnoseCommand(),
    "export-mlflow": ExportMlflowCommand(),
    "claims": ClaimsCommand(),
}
"""Every command, in the order a study uses them."""


def get_parser() -> Parser:
    parser = Parser(
        prog="memsweep",
        description="Measure how RLlib training memory grows with replay capacity, model "
        "size, env runners and framework.",
    )
    parser.add_argument("--version", action="version", version=f"memsweep {__version__}")
    parser.epilog = exit_codes_text()
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add_commands(parser, COMMANDS)
    return parser


def exit_codes_text() -> str:
    """The exit-code table ``--help`` prints (and the README repeats)."""
    width = max(len(str(code)) for code in EXIT_CODES)
    return "exit codes:\n" + "\n".join(
        f"  {code:>{width}}  {meaning}" for code, meaning in EXIT_CODES.items()
    )


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    analyzing = words[:1] == ["analyze"]
    prog = "memsweep analyze" if analyzing and len(words) > 1 else "memsweep"
    try:
        if analyzing:
            words = ["analyze", *with_default_command(words[1:])]
        if words and words[0] in ANALYZE_COMMANDS and words[0] not in COMMANDS:
            # `memsweep predict …`: argparse would list every command; name the one meant.
            raise UsageError(
                f"{words[0]} is a command of memsweep analyze: run "
                f"`memsweep analyze {' '.join(words)}`"
            )
        parser = get_parser()
        args = parser.parse(words)
        command: Command = args.entry
        return command.run(args, parser)
    except MemsweepError as exc:
        # One line, however many problems (a sweep file can have several).
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        print(f"{prog}: {'; '.join(lines)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        hint = "" if analyzing else "; resume with `memsweep run --resume SWEEP`"
        print(f"{prog}: interrupted{hint}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        raise  # the reader of stdout left (`memsweep validate … | head`): entry() ends quietly
    except Exception as exc:
        # The backstop: every expected failure is a MemsweepError raised where it is
        # known; anything else is a bug, told in one line (the traceback on request).
        if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
            traceback.print_exc()
        where = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(
            f"{prog}: internal error: {type(exc).__name__}{': ' + where if where else ''} "
            f"(a bug in memsweep {__version__}: rerun with {DEBUG_ENV}=1 for the traceback "
            f"and {REPORT_HINT})",
            file=sys.stderr,
        )
        return INTERNAL_ERROR


def entry() -> None:
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # `memsweep validate … | head`: the reader left; say nothing more, like `cat`.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    sys.exit(code)

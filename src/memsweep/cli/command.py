"""The one command protocol and parser every ``memsweep`` command uses (memray's layout).

A command is a small object with ``help``, ``prepare_parser(parser)`` and
``run(args, parser) -> int``; ``run`` turns the argparse namespace into typed values at
once and passes only those inward. An expected failure is a
:class:`~memsweep.errors.MemsweepError`, printed as one line with its exit code.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import NoReturn, Protocol

from memsweep.errors import MemsweepError


class Command(Protocol):
    help: str

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int: ...


class Parser(argparse.ArgumentParser):
    """argparse that raises a one-line error instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise MemsweepError(f"{message} (see {self.prog} --help)")


def add_commands(
    parser: argparse.ArgumentParser,
    commands: Mapping[str, Command],
    dest: str = "command",
    entry: str = "entry",
) -> None:
    """One subparser per command, in the mapping's order (the order of a workflow); the
    chosen command object lands in the namespace as ``entry``."""
    sub = parser.add_subparsers(dest=dest, metavar="COMMAND", required=True, parser_class=Parser)
    for name, command in commands.items():
        child = sub.add_parser(name, help=command.help, description=command.help)
        command.prepare_parser(child)
        child.set_defaults(**{entry: command})

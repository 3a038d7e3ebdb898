"""The one command protocol and parser every ``memsweep`` command uses (memray's layout).

A command is a small object with ``help``, ``prepare_parser(parser)`` and
``run(args, parser) -> int``; ``run`` turns the argparse namespace into typed values at
once and passes only those inward. An expected failure is a
:class:`~memsweep.errors.MemsweepError`, printed as one line with its exit code.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import NoReturn, Protocol

from memsweep.errors import MemsweepError


class Command(Protocol):
    help: str

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int: ...


HELP_PROG = "help_prog"
"""Namespace attribute: the ``prog`` of the innermost command chosen (its ``--help``)."""


class Parser(argparse.ArgumentParser):
    """argparse that raises a one-line error instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise MemsweepError(f"{message} (see {self.prog} --help)")

    def parse(self, words: Sequence[str]) -> argparse.Namespace:
        """``parse_args`` whose refusals of unknown words point at the help that lists the
        right flags: the chosen command's (argparse names the top-level one), and, for an
        unknown flag before any command, say that a command comes first (argparse says
        only that one is required). :class:`MemsweepError` (exit 2)."""
        words = list(words)
        if words and words[0].startswith("-") and words[0] not in self._option_string_actions:
            raise MemsweepError(
                f"unrecognized arguments: {words[0]}: the first word is a command, "
                f"as in `{self.prog} COMMAND …` (see {self.prog} --help)"
            )
        try:
            parsed, extras = self.parse_known_args(words)
        except MemsweepError as exc:
            # argparse checks required arguments before it lists unknown ones: name both.
            unknown = [word for word in words if not self._known_flag(word)]
            if unknown and "arguments are required" in str(exc):
                raise MemsweepError(f"unrecognized arguments: {' '.join(unknown)}; {exc}") from None
            raise
        if extras:
            prog = getattr(parsed, HELP_PROG, self.prog)
            raise MemsweepError(f"unrecognized arguments: {' '.join(extras)} (see {prog} --help)")
        return parsed

    def _known_flag(self, word: str) -> bool:
        """Whether ``word`` is not a flag, or a flag (or argparse's abbreviation of one)
        of this parser or any command below it."""
        if not word.startswith("-") or word == "-" or word.lstrip("-")[:1].isdigit():
            return True
        name = word.split("=", 1)[0]
        return any(flag.startswith(name) for flag in _flags(self))


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    """Every option string of ``parser`` and of its subcommands' parsers, recursively."""
    flags = set(parser._option_string_actions)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                flags |= _flags(child)
    return flags


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
        child.set_defaults(**{entry: command, HELP_PROG: child.prog})

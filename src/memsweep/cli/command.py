"""The one command protocol and parser every ``memsweep`` command uses (memray's layout).

A command is a small object with ``help``, ``prepare_parser(parser)`` and
``run(args, parser) -> int``; ``run`` turns the argparse namespace into typed values at
once and passes only those inward. An expected failure is a
:class:`~memsweep.errors.MemsweepError`, printed as one line with its exit code.
"""

from __future__ import annotations

import argparse
import itertools
import re
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import NoReturn, Protocol

from memsweep.errors import MemsweepError
from memsweep.store.location import is_remote


class Command(Protocol):
    help: str

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int: ...


_SCHEME_ONE_SLASH = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+):/(?!/)")
"""``s3:/b/x``: an address with a slash missing, which ``Path`` takes for a folder ``s3:``."""


def local_path(text: str) -> Path:
    """argparse ``type`` of a path memsweep writes to or reads as local files (a report
    folder, the claims study's output, a folder of sweep files).

    ``file:///abs`` is the local path ``/abs``. Refused, since ``Path`` would make each a
    local folder or the working directory: an empty path; a remote address
    (``s3://b/x`` → ``./s3:/b/x``); an address with a slash missing (``s3:/b/x``; a folder
    really named ``s3:`` is ``./s3:/b/x``).

    Raises: :class:`argparse.ArgumentTypeError` (argparse names the flag; exit 2)."""
    return _local(text, "")


def local_results_path(text: str) -> Path:
    """:func:`local_path` for results memsweep reads only from local disk (the claims
    study's folder): the refusal of a remote address says to copy it down first."""
    return _local(text, " (copy remote results down first, e.g. with `aws s3 sync`)")


def _local(text: str, remote_hint: str) -> Path:
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path: give a path on this machine")
    if text[:7].lower() == "file://":
        url = urllib.parse.urlsplit(text)
        if url.query or url.fragment:
            raise argparse.ArgumentTypeError(
                f"{text}: a file:// URL with a query or fragment is not a path: give the path alone"
            )
        if url.netloc.lower() in ("", "localhost") and url.path:
            return Path(urllib.parse.unquote(url.path))
    if is_remote(text):
        raise argparse.ArgumentTypeError(
            f"{text} is a remote address where a local path is needed: give a path on "
            f"this machine{remote_hint}"
        )
    one_slash = _SCHEME_ONE_SLASH.match(text)
    if one_slash:
        raise argparse.ArgumentTypeError(
            f"{text} reads as a remote address with a slash missing "
            f"({one_slash.group(1)}://…), and a local path is needed here: give a path on "
            f"this machine (./{text} for a folder really named {one_slash.group(1)}:)"
        )
    return Path(text)


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
        if words and not self._known_flag(words[0], [self]):
            raise MemsweepError(
                f"unrecognized arguments: {words[0]}: the first word is a command, "
                f"as in `{self.prog} COMMAND …` (see {self.prog} --help)"
            )
        try:
            parsed, extras = self.parse_known_args(words)
        except MemsweepError as exc:
            # argparse checks required arguments before it lists unknown ones: name both.
            chain = self._chain(words)
            unknown = [word for word in words if not self._known_flag(word, chain)]
            if unknown and "arguments are required" in str(exc):
                raise MemsweepError(f"unrecognized arguments: {' '.join(unknown)}; {exc}") from None
            dashed = _dashed_value(words, str(exc))
            if dashed is not None:
                flag, value = dashed
                raise MemsweepError(
                    f"argument {flag}: {value} is negative: give a positive value (a word "
                    f"that starts with '-' reads as a flag) (see {chain[-1].prog} --help)"
                ) from None
            raise
        if extras:
            prog = getattr(parsed, HELP_PROG, self.prog)
            raise MemsweepError(f"unrecognized arguments: {' '.join(extras)} (see {prog} --help)")
        return parsed

    def _chain(self, words: Sequence[str]) -> list[argparse.ArgumentParser]:
        """This parser and the parsers of the commands ``words`` choose, outermost first."""
        chain: list[argparse.ArgumentParser] = [self]
        for word in words:
            for action in chain[-1]._actions:
                if isinstance(action, argparse._SubParsersAction) and word in action.choices:
                    chain.append(action.choices[word])
                    break
        return chain

    @staticmethod
    def _known_flag(word: str, chain: Sequence[argparse.ArgumentParser]) -> bool:
        """Whether ``word`` is not a flag, or one that a parser of ``chain`` knows: the
        flag, argparse's abbreviation of it (``--vers``), or single-dash flags run together
        with a value (``-hv``), which argparse itself then judges."""
        if not word.startswith("-") or word in ("-", "--") or word.lstrip("-")[:1].isdigit():
            return True
        flags = {flag for parser in chain for flag in parser._option_string_actions}
        if not word.startswith("--") and word[:2] in flags:
            return True
        return bool(flags_named(word.split("=", 1)[0], flags))


def flags_named(word: str, flags: Iterable[str]) -> list[str]:
    """The flags of ``flags`` that ``word`` names as argparse reads it: the flag itself,
    else every long flag it abbreviates (``--bud`` → ``--budget``; one is a match, more
    are ambiguous)."""
    known = list(flags)
    if word in known:
        return [word]
    if not word.startswith("--") or len(word) < 3:
        return []
    return [flag for flag in known if flag.startswith("--") and flag.startswith(word)]


def _dashed_value(words: Sequence[str], message: str) -> tuple[str, str] | None:
    """The flag and value of argparse's "argument --budget: expected one argument" when
    the word after the flag (or a unique abbreviation of it) starts with ``-`` and a
    digit (``-8GB``, ``-1e3``), a negative value that argparse took for a flag because it
    is not a plain number (``-1`` and ``-0.5`` it takes as values); else None."""
    if "expected one argument" not in message or not message.startswith("argument "):
        return None
    flags = message[len("argument ") :].split(":", 1)[0].split("/")
    for word, value in itertools.pairwise(words):
        named = flags_named(word, flags)
        plain_number = _NEGATIVE_NUMBER.match(value) is not None
        if named and value[:1] == "-" and value[1:2].isdigit() and not plain_number:
            return named[-1], value
    return None


_NEGATIVE_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")
"""argparse's own test for a negative number it takes as a value (``_negative_number_matcher``)."""


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

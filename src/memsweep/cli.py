"""``memsweep``: run, validate and analyse memory sweeps.

One small class per subcommand, each with ``prepare_parser`` and ``run`` (the layout of
memray's commands). ``main(argv) -> int`` returns the exit code; an expected failure is a
:class:`~memsweep.errors.MemsweepError`, printed as one line on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn, Protocol

from memsweep.errors import MemsweepError
from memsweep.spec import describe_fields, load_study


class Command(Protocol):
    help: str

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int: ...


class ValidateCommand:
    help = "check a sweep file and print the trials it expands to"

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("sweep", help="a sweep file, e.g. sweeps/default.yaml")
        parser.add_argument(
            "--explain", action="store_true", help="also print every key with its meaning"
        )

    def run(self, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
        study = load_study(args.sweep)
        if args.explain:
            print("\n".join(describe_fields()))
            print()
        print(f"{args.sweep}: study '{study.name}', {study.algorithm} on {study.env.id}")
        print(f"  results: {study.storage_uri}   search: {study.search.mode}", end="")
        search = study.search
        if search.mode == "budget":
            print(
                f" (budget {(search.budget or 0) / 1e9:.2f} GB, maximise "
                f"{', '.join(search.weights)}, "
                f"at most {search.max_trials} trials, one at a time)"
            )
        else:
            print(
                f" ({search.design})"
                if search.mode == "grid"
                else f" ({search.num_samples} samples)"
            )
        stop = {k: v for k, v in study.stop.model_dump().items() if v is not None}
        print(f"  stop: {stop}   sampling: every {study.sampling.interval_s:g} s")
        if search.mode == "budget":
            print(
                "  the search picks among these candidates (the plain grid, --as-grid, runs all):"
            )
        elif study.search.mode != "grid":
            print("  trials are drawn by the searcher from these values:")
            for name, values in study.factors:
                print(f"    {name}: {[getattr(v, 'label', v) for v in values]}")
            return 0
        points = study.points()
        print(f"  {len(points)} trials:")
        header = f"    {'#':>3}  {'capacity':>10}  {'model':<22} {'workers':>7}  {'framework':<10} {'stack':<5} {'seed':>4}"
        print(header)
        for index, point in enumerate(points):
            print(
                f"    {index:>3}  {point.replay_capacity:>10}  {point.model.label:<22} "
                f"{point.num_workers:>7}  {point.framework:<10} {point.api_stack(study):<5} {point.seed:>4}"
            )
        return 0


class RunCommand:
    help = "run a sweep on an embedded local Ray (or --address) and write its Parquet"

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("sweep", help="a sweep file, e.g. sweeps/default.yaml")
        parser.add_argument(
            "--storage", help="results location (path or s3://…); default from the sweep file"
        )
        parser.add_argument(
            "--address",
            default=os.environ.get("MEMSWEEP_RAY_ADDRESS"),
            help="join this Ray cluster instead of starting one",
        )
        parser.add_argument(
            "--resume", action="store_true", help="resume an interrupted sweep from its Tune state"
        )
        parser.add_argument(
            "--as-grid",
            action="store_true",
            help="budget search only: run the plain grid over the same candidates instead "
            "(results in <storage>-grid, grid.md), to compare trials and minutes",
        )

    def run(self, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
        study = load_study(args.sweep)
        from memsweep.sweep import run_study

        outcome = run_study(
            study,
            storage=args.storage,
            resume=args.resume,
            address=args.address,
            source=args.sweep,
            as_grid=args.as_grid,
        )
        return 1 if outcome.num_errors else 0


class AnalyzeCommand:
    help = "analyse a results folder (same as python -m memsweep.analyze)"

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for memsweep.analyze")

    def run(self, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
        from memsweep.analyze.__main__ import main as analyze_main

        return analyze_main(list(args.rest))


COMMANDS: dict[str, Command] = {
    "run": RunCommand(),
    "validate": ValidateCommand(),
    "analyze": AnalyzeCommand(),
}


def _extra_commands() -> None:
    """Commands that live in their own modules (claims, cluster submission)."""
    from memsweep.claims_cli import commands as claims_commands

    COMMANDS.update(claims_commands())
    try:
        from memsweep.submit import commands as submit_commands
    except ImportError:
        return
    COMMANDS.update(submit_commands())


class _Parser(argparse.ArgumentParser):
    """argparse that raises a one-line error instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise MemsweepError(f"{message} (see {self.prog} --help)")


def get_parser() -> argparse.ArgumentParser:
    _extra_commands()
    parser = _Parser(
        prog="memsweep",
        description="Measure how RLlib training memory grows with replay capacity, model size, env runners and framework.",
    )
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=_Parser
    )
    for name, command in COMMANDS.items():
        child = sub.add_parser(name, help=command.help, description=command.help)
        command.prepare_parser(child)
        child.set_defaults(entry=command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = get_parser()
        args = parser.parse_args(argv)
        command: Command = args.entry
        return command.run(args, parser)
    except MemsweepError as exc:
        # One line, however many problems (a sweep file can have several).
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        print(f"memsweep: {'; '.join(lines)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("memsweep: interrupted; resume with `memsweep run --resume SWEEP`", file=sys.stderr)
        return 130


def entry() -> None:
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # `memsweep validate … | head`: the reader left; say nothing more, like `cat`.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    sys.exit(code)

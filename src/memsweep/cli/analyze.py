"""The ``report`` and ``predict`` subcommands: one small class each (memray's layout).

``run`` turns the argparse namespace into typed values at once (flags are parsed by the
helpers in :mod:`memsweep.units`, so a bad value is a one-line
:class:`~memsweep.errors.MemsweepError` naming the flag) and passes nothing but those
inward.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from memsweep.cli.command import Command, add_commands, flags_named, local_path, local_results_path
from memsweep.cli.output import writable_folder
from memsweep.errors import DataError, MemsweepError, UsageError
from memsweep.store import is_remote, refuse_missing_local
from memsweep.units import (
    format_bytes,
    format_level,
    parse_count,
    parse_counts,
    parse_model,
    parse_size,
)

if TYPE_CHECKING:
    from memsweep.analyze.analysis import Analysis
    from memsweep.store import Results

# The analysis modules (pandas, statsmodels, duckdb, matplotlib) are imported inside
# ``run``, after the flags and the folder have been checked: a typo answers at once.


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", help="a results folder: results/<sweep> or s3://bucket/prefix")
    parser.add_argument(
        "--confidence", default="0.95", help="two-sided interval level (default 0.95)"
    )
    parser.add_argument(
        "--horizon",
        default="10M",
        metavar="ENV_STEPS",
        help="project sustained growth over this many env steps (100M, 1e8; default 10M)",
    )


def read_results(uri: str) -> Results:
    """The results folder at ``uri``: a local one that is not there is refused before the
    store's readers (pyarrow, pandas) are imported, so that the refusal answers at once.
    :class:`DataError` (exit 3) if it is not a results folder."""
    refuse_missing_local(uri)
    from memsweep.store import open_results

    return open_results(uri)


def _analyse(args: argparse.Namespace) -> Analysis:
    """Check the flags and the folder, then import the analysis and run it."""
    confidence, horizon = _option_values(args)
    results = read_results(args.results)
    from memsweep.analyze.analysis import AnalysisOptions, analyze_results

    return analyze_results(
        results, AnalysisOptions(confidence=confidence, horizon_env_steps=horizon)
    )


def _option_values(args: argparse.Namespace) -> tuple[float, float]:
    try:
        confidence = float(args.confidence)
    except ValueError:
        raise MemsweepError(
            f"--confidence: expected a number such as 0.95, got {args.confidence!r}"
        ) from None
    if not 0.5 <= confidence < 1:
        raise MemsweepError(f"--confidence must be in [0.5, 1), got {args.confidence}")
    horizon = parse_count(str(args.horizon), "--horizon", minimum=1)
    return confidence, float(horizon)


class ReportCommand:
    help = "analyse a sweep: phases, factor models, growth verdicts; write analysis/ (the default)"

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        _add_common(parser)
        parser.add_argument(
            "--out",
            type=local_path,
            help="output folder (default: <results>/analysis; required for remote results)",
        )

    def run(self, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
        out: Path | None = args.out
        if out is None and is_remote(args.results):
            raise MemsweepError(
                f"{args.results} is remote: give a local --out folder for the report"
            )
        _option_values(args)
        # The folder is checked first (nothing is created beside what is not a results
        # folder), then the output, then the analysis runs.
        read_results(args.results)
        writable_folder(out if out is not None else Path(args.results) / "analysis")
        analysis = _analyse(args)
        from memsweep.report.document import summary_text, write_report

        files = write_report(analysis, out)
        print(summary_text(analysis, files))
        return 0


class PredictCommand:
    help = "predict plateau and peak memory of a configuration, or what fits a --budget"

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        _add_common(parser)
        parser.add_argument(
            "--replay-capacity",
            metavar="N",
            help="replay-buffer capacity, transitions (1000000, 1e6, 1M)",
        )
        parser.add_argument("--num-workers", metavar="N", help="remote env runners")
        parser.add_argument(
            "--model", help="dense layer sizes (512,512) or a model label of the sweep"
        )
        parser.add_argument(
            "--model-params",
            metavar="N",
            help="parameters of one model copy (default: measured or estimated)",
        )
        parser.add_argument("--framework", help="torch, tf2 or tf2-eager")
        parser.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            dest="settings",
            help="any factor of the sweep by name, e.g. --set train_batch_size_per_learner=64000 "
            "or --set env_config.size=32 (repeatable; a number, else a label the sweep ran)",
        )
        parser.add_argument(
            "--budget",
            metavar="SIZE",
            help="memory of the node, e.g. 64GB: print the largest value that fits",
        )
        parser.add_argument(
            "--emit",
            choices=("ray",),
            help="ray: print the Tune/Ray code that requests each role's memory "
            "(a PlacementGroupFactory with memory per bundle) and the nodes it needs",
        )
        parser.add_argument(
            "--margin",
            metavar="FRACTION",
            help="with --emit: added over the upper prediction bound of the peak (default 0.2)",
        )
        parser.add_argument(
            "--node-memory",
            metavar="SIZE",
            help="with --emit: Ray memory of one node (e.g. 16GB), to count the nodes needed",
        )
        parser.add_argument(
            "--solve-for",
            metavar="FACTOR",
            help="with --budget: the numeric factor to maximise: replay_capacity (default), "
            "num_workers or any other numeric factor of the sweep",
        )

    def run(self, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
        _option_values(args)
        if args.solve_for in ("model", "framework"):
            raise MemsweepError(
                f"--solve-for: {args.solve_for} is not a numeric factor; give replay_capacity, "
                "num_workers or another numeric factor of the sweep"
            )
        budget = parse_size(args.budget, "--budget") if args.budget is not None else None
        capacity = _count(args.replay_capacity, "--replay-capacity")
        workers = _count(args.num_workers, "--num-workers")
        params = _count(args.model_params, "--model-params", minimum=1)
        if args.model is not None:
            parse_model(args.model)
        if args.framework is not None and args.framework not in ("torch", "tf2", "tf2-eager"):
            raise MemsweepError(
                f"--framework: expected torch, tf2 or tf2-eager, got {args.framework!r}"
            )
        if args.emit == "ray" and budget is not None:
            raise MemsweepError("--emit and --budget: give one of them")
        if args.solve_for is not None:
            if not args.solve_for.strip():
                raise MemsweepError(
                    "--solve-for: give a numeric factor of the sweep, such as replay_capacity "
                    "or num_workers"
                )
            if args.emit == "ray":
                raise MemsweepError(
                    f"--solve-for {args.solve_for} goes with --budget (the largest value that "
                    "fits it), not with --emit: give one of them"
                )
            if budget is None:
                raise MemsweepError(
                    f"--solve-for {args.solve_for} answers a --budget: give the budget too, "
                    "as in --budget 16GB"
                )
        margin, node_memory = _emit_values(args)
        settings = tuple(parse_setting(text) for text in args.settings)
        analysis = _analyse(args)
        from memsweep.analyze.prediction import PredictPoint, predict, prediction_text
        from memsweep.analyze.solve import solve_budget

        point = PredictPoint(
            replay_capacity=capacity,
            num_workers=workers,
            model=args.model,
            framework=args.framework,
            model_params=params,
            settings=settings,
        )
        if args.emit == "ray":
            from memsweep.report.emit import emit_ray

            print(emit_ray(predict(analysis, point), margin, node_memory, sweep=analysis.name))
            return 0
        if budget is None:
            print(prediction_text(predict(analysis, point)))
            return 0
        factor = args.solve_for if args.solve_for is not None else "replay_capacity"
        answer = solve_budget(analysis, point, budget, factor)
        factor = answer.factor
        if answer.largest_expected is None:
            print(
                f"Nothing fits {format_bytes(budget)}: even {factor}=0 is predicted above it "
                "(peak + Ray system processes)."
            )
            return 1
        capped = (
            " (the search limit: more fits)" if answer.largest_safe == answer.searched_up_to else ""
        )
        safe = f"{answer.largest_safe:,}" if answer.largest_safe is not None else "none"
        print(
            f"Budget {format_bytes(budget)}: largest {factor} = {safe}{capped} with the upper "
            f"{format_level(analysis.options.confidence)} prediction bound of the peak (+ Ray system) "
            "inside it; "
            f"{answer.largest_expected:,} on the point estimate."
        )
        if answer.prediction is not None:
            print(prediction_text(answer.prediction))
        return 0


class ClaimsTableCommand:
    help = "the claims table from the claim sweeps' results (see memsweep claims run)"

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "folder",
            type=local_results_path,
            help="the claims results folder, e.g. results/claims-2cpu-24gb",
        )
        parser.add_argument(
            "--confidence", default="0.95", help="two-sided interval level (default 0.95)"
        )
        parser.add_argument(
            "--reports", action="store_true", help="also write each sweep's analysis/ report"
        )

    def run(self, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
        args.horizon = "10M"
        confidence, _ = _option_values(args)
        refuse_missing_local(args.folder)
        from memsweep.analyze.analysis import AnalysisOptions
        from memsweep.claims.render import print_and_write

        return print_and_write(
            args.folder, AnalysisOptions(confidence=confidence), reports=args.reports
        )


class DesignsCommand:
    help = "compare designs (one at a time, half fraction, QMC, random) on a full-grid sweep"

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        _add_common(parser)
        parser.add_argument(
            "--sizes", help="design sizes to try, e.g. 4,5,6 (default: terms … trials − 1)"
        )

    def run(self, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
        sizes = None
        if args.sizes:
            sizes = parse_counts(args.sizes, "--sizes", minimum=2)
        analysis = _analyse(args)
        from memsweep.analyze.designs import designs_report

        try:
            print(designs_report(analysis.name, analysis.trial_table, sizes))
        except ValueError as exc:
            raise MemsweepError(f"{args.results}: {exc}") from None
        return 0


def parse_setting(text: str) -> tuple[str, float | str]:
    """``NAME=VALUE`` of ``--set``: a number (``64000``, ``1e6``, ``2.5``) or a label."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise MemsweepError(
            f"--set: expected NAME=VALUE such as train_batch_size_per_learner=64000, got {text!r}"
        )
    value = value.strip()
    try:
        number = float(value.replace("_", ""))
    except ValueError:
        return name.strip(), value
    if not math.isfinite(number):
        raise MemsweepError(f"--set {name.strip()}: expected a finite number, got {value!r}")
    return name.strip(), number


def _emit_values(args: argparse.Namespace) -> tuple[float, int | None]:
    """(margin, node memory in bytes or None) of ``--emit``; :class:`MemsweepError` for a
    bad value, or for either flag without ``--emit`` (it would be silently ignored)."""
    if args.emit is None:
        for flag, value in (("--margin", args.margin), ("--node-memory", args.node_memory)):
            if value is not None:
                raise MemsweepError(
                    f"{flag} goes with --emit ray (it sizes the emitted requests): add "
                    "--emit ray, or leave it out"
                )
    text = args.margin if args.margin is not None else "0.2"
    try:
        margin = float(text)
    except ValueError:
        raise MemsweepError(f"--margin: expected a fraction such as 0.2, got {text!r}") from None
    if not 0 <= margin <= 10:
        raise MemsweepError(f"--margin must be in [0, 10] (a fraction: 0.2 = 20 %), got {text}")
    node = parse_size(args.node_memory, "--node-memory") if args.node_memory else None
    return margin, node


def _count(text: str | None, flag: str, minimum: int = 0) -> int | None:
    return None if text is None else parse_count(text, flag, minimum)


COMMANDS: dict[str, Command] = {
    "report": ReportCommand(),
    "predict": PredictCommand(),
    "claims": ClaimsTableCommand(),
    "designs": DesignsCommand(),
}


class AnalyzeCommand:
    help = "analyse a results folder: report (the default), predict (and --budget), designs, claims"

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        add_commands(parser, COMMANDS, dest="analyze_command", entry="analyze_entry")

    def run(self, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
        with damaged_parquet_is_one_line():
            return int(args.analyze_entry.run(args, parser))


@contextlib.contextmanager
def damaged_parquet_is_one_line() -> Iterator[None]:
    """A damaged Parquet part (a truncated copy, a disk error) surfaces in duckdb when the
    analysis reads the samples: a :class:`DataError` (exit 3) naming it, for every
    command that analyses a folder (``analyze``, ``compare``)."""
    try:
        yield
    except Exception as exc:
        # duckdb is loaded by then if it raised: a refusal before any reading (a folder
        # that is not there) does not load it for this check.
        duckdb = sys.modules.get("duckdb")
        if duckdb is None or not isinstance(exc, duckdb.Error):
            raise
        text = str(exc).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        raise DataError(
            f"cannot read the sample data ({first}); a Parquet file in the results "
            "folder is damaged: restore it from a copy of the results folder, or move it out "
            "of the folder to analyse the rest without its rows"
        ) from None


def with_default_command(argv: list[str]) -> list[str]:
    """``analyze RESULTS …`` → ``analyze report RESULTS …``: report is the default.

    Raises :class:`~memsweep.errors.UsageError` when the report's results folder, the
    first word that is neither a flag nor a flag's value, is a command's name
    (``analyze --confidence 0.9 predict R``) and no folder of that name is here."""
    if argv and argv[0] not in COMMANDS and argv[0] not in ("-h", "--help"):
        at = _first_positional(argv, COMMANDS["report"])
        if at is not None and argv[at] in COMMANDS and not Path(argv[at]).exists():
            raise UsageError(
                f"{argv[at]} is a command: name it right after `memsweep analyze`, before "
                f"any flag (see memsweep analyze {argv[at]} --help)"
            )
        return ["report", *argv]
    return argv


def _first_positional(argv: list[str], command: Command) -> int | None:
    """Index of the first word of ``argv`` that ``command``'s parser takes as a positional
    argument: not a flag, not a flag's value (flags as argparse reads them: ``--out X``,
    ``--out=X``, a unique abbreviation), after ``--``; None when there is none."""
    probe = argparse.ArgumentParser(add_help=False)
    command.prepare_parser(probe)
    takes_value = {
        flag for action in probe._actions if action.nargs != 0 for flag in action.option_strings
    }
    flags = set(probe._option_string_actions) | {"-h", "--help"}
    index = 0
    while index < len(argv):
        word = argv[index]
        if word == "--":
            return index + 1 if index + 1 < len(argv) else None
        if not word.startswith("-") or word == "-":
            return index
        name, given, _ = word.partition("=")
        match = flags_named(name, flags)
        index += 2 if not given and len(match) == 1 and match[0] in takes_value else 1
    return None

"""``memsweep watch``: attach to a running Ray cluster and record its memory to Parquet."""

from __future__ import annotations

import argparse
import time

from memsweep.errors import MemsweepError, UsageError


def refuse_a_folder_with_results(out: str) -> None:
    """:class:`~memsweep.errors.UsageError` when ``out`` (a path or ``s3://…``) already
    holds samples: a second recording would be analysed as one with the first."""
    from memsweep.errors import DataError
    from memsweep.store import Results, resolve

    fs, root = resolve(out)
    try:
        held = Results(uri=out, fs=fs, root=root).files("samples")
    except (OSError, DataError):
        return  # Unreadable: the writer says why when it starts.
    if held:
        raise UsageError(
            f"{out} already holds a recording (samples/): give --out a new folder, or leave "
            "it out for results/watch-<UTC time>"
        )


class WatchCommand:
    help = (
        "attach to a running Ray cluster (nothing restarted): sample every node, attribute "
        "processes to Tune trials, jobs and actors, write Parquet until the job ends or Ctrl-C"
    )

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--address",
            required=True,
            help="the cluster's GCS: HOST:PORT as `ray status` names it, or auto on one of its nodes",
        )
        parser.add_argument(
            "--job",
            help="stop when this Ray job ends (its JOB_ID from `ray list jobs`, e.g. "
            "02000000); only its processes are attributed to trials",
        )
        parser.add_argument(
            "--out",
            help="results folder (path or s3://…); default results/watch-<UTC time>",
        )
        parser.add_argument(
            "--seconds", type=float, help="stop after this many seconds (default: Ctrl-C)"
        )

    def run(self, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
        from memsweep.run.watch import watch

        if args.seconds is not None and not args.seconds > 0:
            raise MemsweepError(f"--seconds must be positive, not {args.seconds:g}")
        out = args.out or f"results/watch-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
        refuse_a_folder_with_results(out)
        print(
            f"memsweep watch: connecting to {args.address}, then recording into {out} "
            "(Ctrl-C to stop)",
            flush=True,
        )
        outcome = watch(args.address, out, job=args.job, seconds=args.seconds)
        print(
            f"memsweep watch: {outcome.why_stopped} after {outcome.seconds:.0f} s, "
            f"{outcome.trials} trials recorded"
        )
        print(f"Next: memsweep analyze {outcome.storage}")
        return 0

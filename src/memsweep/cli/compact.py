"""``memsweep compact``: merge a results folder's part files into a few large files
(:mod:`memsweep.store.compact` does the work; a sweep does it itself when it ends)."""

from __future__ import annotations

import argparse

from memsweep.store import refuse_missing_local


class CompactCommand:
    help = "merge a results folder's Parquet parts into a few large files (crash-safe)"

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("results", help="a results folder (path or s3://…)")

    def run(self, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
        refuse_missing_local(args.results)
        from memsweep.store.compact import compact_results

        print(compact_results(args.results).summary())
        return 0

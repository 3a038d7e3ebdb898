"""``memsweep submit``, ``status`` and ``stop``: a sweep as a Ray job on a cluster
(the Ray Jobs client lives in :mod:`memsweep.run.jobs`)."""

from __future__ import annotations

import abc
import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from memsweep.errors import MemsweepError
from memsweep.run.jobs import call, connect, endpoint_from, follow, plan_job


def _add_address(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--address",
        default=os.environ.get("RAY_ADDRESS"),
        help="the head's dashboard, http://HEAD:8265 (default: $RAY_ADDRESS)",
    )


class SubmitCommand:
    help = "submit a sweep to a Ray cluster as a Ray job (prints the job id)"

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("sweep", help="a sweep file, e.g. sweeps/default.yaml")
        _add_address(parser)
        parser.add_argument(
            "--storage",
            help="results location every node can reach: s3://…, gs://… or a shared absolute path",
        )
        parser.add_argument(
            "--follow", action="store_true", help="stream the job's logs; exit with its status"
        )
        parser.add_argument(
            "--resume", action="store_true", help="resume the interrupted sweep in its storage"
        )

    def run(self, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
        sweep = Path(args.sweep)
        if not sweep.is_file():
            raise MemsweepError(f"No such file: {args.sweep}")
        endpoint = endpoint_from(args.address)
        with tempfile.TemporaryDirectory(prefix="memsweep-job-") as staging:
            plan = plan_job(sweep, Path(staging), args.storage, args.resume)
            client = connect(endpoint)
            job_id: str = call(
                endpoint,
                None,
                lambda: client.submit_job(
                    entrypoint=plan.entrypoint,
                    runtime_env=plan.runtime_env,
                    submission_id=plan.submission_id,
                    metadata={"memsweep_sweep": sweep.name},
                ),
            )
        print(job_id, flush=True)
        print(
            f"memsweep: submitted {sweep} to {endpoint.address}; results in {plan.storage}",
            file=sys.stderr,
        )
        if not args.follow:
            print(
                f"memsweep: `memsweep status {job_id} --address {endpoint.address}` to check it",
                file=sys.stderr,
            )
            return 0
        return follow(endpoint, client, job_id)


class _JobCommand(abc.ABC):
    """A command about one submitted job: its id and the cluster's address."""

    help = ""

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("job", help="the job id that `memsweep submit` printed")
        _add_address(parser)

    def run(self, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
        endpoint = endpoint_from(args.address)
        return self.act(endpoint, connect(endpoint), args.job)

    @abc.abstractmethod
    def act(self, endpoint: Any, client: Any, job: str) -> int:
        """Do the command's work on ``job``; returns the exit code."""


class StatusCommand(_JobCommand):
    help = "show a submitted sweep's job status"

    def act(self, endpoint: Any, client: Any, job: str) -> int:
        info = call(endpoint, job, lambda: client.get_job_info(job))
        message = f"  {endpoint.scrub(info.message)}" if info.message else ""
        print(f"{job}  {info.status}{message}")
        return 0


class StopCommand(_JobCommand):
    help = "stop a submitted sweep's job (resume it later with submit --resume)"

    def act(self, endpoint: Any, client: Any, job: str) -> int:
        stopped = call(endpoint, job, lambda: client.stop_job(job))
        if stopped:
            print(f"memsweep: stopping job {job}")
        else:
            info = call(endpoint, job, lambda: client.get_job_info(job))
            print(f"memsweep: job {job} had already ended ({info.status})")
        return 0

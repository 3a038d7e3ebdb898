"""``memsweep submit``, ``status`` and ``stop``: a sweep as a Ray job on a cluster.

The sweep runs where Ray's Job Submission API puts its driver (the head node): the job's
runtime environment carries memsweep's own package (``py_modules``) and the sweep file
(``working_dir``); the entrypoint is ``python -m memsweep run <sweep>``. The cluster
must already have memsweep's dependencies (Ray, RLlib, torch, TensorFlow) installed.

**Token.** Ray 2.60's dashboard and job API want ``Authorization: Bearer <token>``.
memsweep looks for the token where Ray's own ``AuthenticationTokenLoader`` does, in the
same order: ``RAY_AUTH_TOKEN``, then the file named by ``RAY_AUTH_TOKEN_PATH``, then
``~/.ray/auth_token`` (first line, whitespace trimmed). It sends the header itself, so
it works whether or not ``RAY_AUTH_MODE=token`` is set on this machine. The token is
never printed or logged, and is scrubbed from any error text shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import memsweep
from memsweep.errors import ClusterError, MemsweepError
from memsweep.spec import load_study
from memsweep.store import is_remote

if TYPE_CHECKING:
    pass

DEFAULT_TOKEN_PATH = Path("~/.ray/auth_token")
"""Ray's default token file (``ray get-auth-token --generate`` writes it)."""

_PREFLIGHT_TIMEOUT_S = 10.0
"""Seconds to wait for the dashboard's first answer before calling it unreachable."""

_TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}

_SUBMISSION_ID = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True)
class Token:
    """A cluster token and where it came from (the source, never the value, is shown)."""

    value: str = field(repr=False)
    """The secret itself."""
    source: str
    """``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH=<path>`` or the default file's path."""


@dataclass(frozen=True)
class Endpoint:
    """Where a cluster's job API answers, and the token to show it."""

    address: str
    """The dashboard's URL, e.g. ``http://10.0.0.5:8265``."""
    token: Token | None
    """None when no token was found (fine for a cluster without token auth)."""

    def scrub(self, text: str) -> str:
        """``text`` with the token (if any) replaced, safe to print."""
        if self.token is None or not self.token.value:
            return text
        return text.replace(self.token.value, "<token>")


def find_token(environ: Mapping[str, str] | None = None, home: Path | None = None) -> Token | None:
    """The cluster token, looked up like Ray 2.60 does; None if there is none.

    A ``RAY_AUTH_TOKEN_PATH`` that names a missing or empty file is an error (Ray treats
    it so too), rather than a silent fall-through to the default file.
    """
    env = os.environ if environ is None else environ
    value = env.get("RAY_AUTH_TOKEN", "").strip()
    if value:
        return Token(value, "RAY_AUTH_TOKEN")
    path_text = env.get("RAY_AUTH_TOKEN_PATH", "")
    if path_text:
        value = _first_line(Path(path_text).expanduser())
        if not value:
            raise ClusterError(
                f"RAY_AUTH_TOKEN_PATH={path_text} names a missing or empty file. Point it at "
                "the cluster's token file (on the head: ~/.ray/auth_token), or unset it."
            )
        return Token(value, f"RAY_AUTH_TOKEN_PATH={path_text}")
    default = (
        (home / ".ray" / "auth_token") if home is not None else DEFAULT_TOKEN_PATH.expanduser()
    )
    value = _first_line(default)
    return Token(value, str(default)) if value else None


def _first_line(path: Path) -> str:
    try:
        with path.open(encoding="utf-8") as handle:
            return handle.readline().strip()
    except (OSError, UnicodeDecodeError):
        return ""


def normalize_address(address: str | None) -> str:
    """``HEAD:8265`` or ``http(s)://HEAD:8265`` → the dashboard URL without a trailing /."""
    text = (address or "").strip()
    if not text:
        raise ClusterError(
            "No cluster address: pass --address http://HEAD:8265 (the head's dashboard) "
            "or set RAY_ADDRESS."
        )
    if "://" not in text:
        text = f"http://{text}"
    scheme = text.split("://", 1)[0].lower()
    if scheme not in {"http", "https"}:
        raise ClusterError(
            f"--address {text}: memsweep talks to the dashboard's job API, so give its "
            "http://HEAD:8265 address (not a ray:// or GCS address)."
        )
    return text.rstrip("/")


def _missing_token_message(endpoint: Endpoint) -> str:
    return (
        f"{endpoint.address} requires a Ray auth token and none was found. Copy the head's "
        "token (run `ray get-auth-token` there) into ~/.ray/auth_token, or set "
        "RAY_AUTH_TOKEN_PATH to a file holding it, or RAY_AUTH_TOKEN."
    )


def _refused_token_message(endpoint: Endpoint) -> str:
    source = endpoint.token.source if endpoint.token else "nowhere"
    return (
        f"{endpoint.address} refused the Ray auth token from {source}. Use the head's token "
        "(`ray get-auth-token` on the head prints it) via ~/.ray/auth_token, "
        "RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN."
    )


def _unreachable_message(endpoint: Endpoint, reason: str) -> str:
    return (
        f"Cannot reach the Ray dashboard at {endpoint.address} ({reason}). Is the head "
        "running, and its dashboard reachable from here (`ray start --head "
        "--dashboard-host 0.0.0.0`, an SSH tunnel, or `kubectl port-forward … 8265`)?"
    )


def _preflight(endpoint: Endpoint) -> None:
    """Ask the dashboard's public ``/api/authentication_mode`` first: it tells apart an
    unreachable head, something that is not a Ray dashboard, and a missing token, with a
    timeout (the job client itself has none on its first request)."""
    import requests

    url = f"{endpoint.address}/api/authentication_mode"
    try:
        response = requests.get(url, timeout=_PREFLIGHT_TIMEOUT_S)
    except requests.exceptions.Timeout:
        raise ClusterError(_unreachable_message(endpoint, "no answer in 10 s")) from None
    except requests.exceptions.ConnectionError as exc:
        reason = "connection refused" if "refused" in str(exc).lower() else type(exc).__name__
        raise ClusterError(_unreachable_message(endpoint, reason)) from None
    except requests.exceptions.RequestException as exc:
        raise ClusterError(_unreachable_message(endpoint, endpoint.scrub(str(exc)))) from None
    if response.status_code == 404:
        return  # An older dashboard without this endpoint: the job client will tell.
    try:
        mode = response.json().get("authentication_mode") if response.ok else None
    except ValueError:
        mode = None
    if mode is None:
        raise ClusterError(
            f"{endpoint.address} is not a Ray dashboard (GET /api/authentication_mode "
            f"answered HTTP {response.status_code}). Give the head's dashboard address, "
            "http://HEAD:8265."
        )
    if mode == "token" and endpoint.token is None:
        raise ClusterError(_missing_token_message(endpoint))


@contextlib.contextmanager
def _explicit_address() -> Iterator[None]:
    """Ray's job client lets ``RAY_ADDRESS``/``RAY_API_SERVER_ADDRESS`` override the address
    it is given; memsweep's ``--address`` (which already defaults to ``RAY_ADDRESS``) wins."""
    saved = {
        k: os.environ.pop(k) for k in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS") if k in os.environ
    }
    try:
        yield
    finally:
        os.environ.update(saved)


def connect(endpoint: Endpoint) -> Any:
    """A ``JobSubmissionClient`` for ``endpoint``, or a one-line :class:`ClusterError`."""
    _preflight(endpoint)
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    headers = {"Authorization": f"Bearer {endpoint.token.value}"} if endpoint.token else None
    try:
        with _explicit_address():
            return JobSubmissionClient(endpoint.address, headers=headers)
    except AuthenticationError as exc:
        raise _auth_error(endpoint, exc) from None
    except ConnectionError:
        raise ClusterError(_unreachable_message(endpoint, "connection failed")) from None
    except (RuntimeError, ValueError) as exc:
        raise ClusterError(f"{endpoint.address}: {endpoint.scrub(str(exc))}") from None


def _auth_error(endpoint: Endpoint, exc: BaseException) -> ClusterError:
    text = str(exc)
    if text.startswith("Authentication required") or endpoint.token is None:
        return ClusterError(_missing_token_message(endpoint))
    return ClusterError(_refused_token_message(endpoint))


def call(endpoint: Endpoint, job_id: str | None, what: Callable[[], Any]) -> Any:
    """Run one job-API call; turn Ray's errors into one-line messages."""
    from ray.exceptions import AuthenticationError

    try:
        return what()
    except AuthenticationError as exc:
        raise _auth_error(endpoint, exc) from None
    except ConnectionError:
        raise ClusterError(_unreachable_message(endpoint, "connection lost")) from None
    except RuntimeError as exc:
        text = endpoint.scrub(str(exc))
        if job_id is not None and "status code 404" in text:
            raise ClusterError(
                f"No job {job_id} on {endpoint.address}. `ray job list --address "
                f"{endpoint.address}` lists the cluster's jobs."
            ) from None
        raise ClusterError(f"{endpoint.address}: {text}") from None


def endpoint_from(address: str | None) -> Endpoint:
    return Endpoint(address=normalize_address(address), token=find_token())


# -- what a submitted sweep runs -------------------------------------------------------------


@dataclass(frozen=True)
class JobPlan:
    """Everything a submission sends: entrypoint, runtime environment and id."""

    submission_id: str
    entrypoint: str
    runtime_env: dict[str, Any]
    storage: str


def _check_storage(storage: str | None, source: str) -> str:
    """Results of a job must outlive the job's working directory, which Ray deletes."""
    if storage and (is_remote(storage) or Path(storage).is_absolute()):
        return storage
    shown = f"'{storage}'" if storage else "the default results/<name>"
    raise ClusterError(
        f"{source}: storage is {shown}, a path relative to the job's temporary working "
        "directory on the head node, where the results would be lost. Set 'storage:' in "
        "the sweep file or pass --storage: s3://bucket/prefix, gs://bucket/prefix, or an "
        "absolute path that every node and you can read (NFS)."
    )


def plan_job(sweep: Path, staging: Path, storage: str | None, resume: bool) -> JobPlan:
    """Validate ``sweep`` here (errors before anything is sent) and plan its job.

    ``staging`` is an empty folder that becomes the job's ``working_dir``: it receives a
    copy of the sweep file and nothing else.
    """
    from memsweep.run.sweep import WORKER_ENV

    study = load_study(str(sweep))
    target = _check_storage(storage or study.storage, str(sweep))
    shutil.copyfile(sweep, staging / sweep.name)
    command = ["python", "-m", "memsweep", "run", sweep.name]
    if storage:
        command += ["--storage", storage]
    if resume:
        command.append("--resume")
    package = Path(memsweep.__file__).resolve().parent
    runtime_env: dict[str, Any] = {
        "working_dir": str(staging),
        "py_modules": [str(package)],
        "excludes": ["__pycache__", "*.pyc", ".mypy_cache", ".ruff_cache"],
        "env_vars": dict(WORKER_ENV),
    }
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = _SUBMISSION_ID.sub("-", study.name)
    submission_id = f"memsweep-{name}-{stamp}-{secrets.token_hex(2)}"
    return JobPlan(submission_id, shlex.join(command), runtime_env, target)


async def _tail(client: Any, job_id: str) -> None:
    async for chunk in client.tail_job_logs(job_id):
        sys.stdout.write(chunk)
        sys.stdout.flush()


def follow(endpoint: Endpoint, client: Any, job_id: str) -> int:
    """Stream the job's logs until it ends; the exit code is 0 if it SUCCEEDED."""
    try:
        asyncio.run(_tail(client, job_id))
    except KeyboardInterrupt:
        print(
            f"memsweep: stopped following; job {job_id} goes on. `memsweep status {job_id}` "
            f"or `memsweep stop {job_id}` (with --address {endpoint.address}).",
            file=sys.stderr,
        )
        return 130
    except MemsweepError:
        raise
    except Exception as exc:  # aiohttp's errors, Ray's RuntimeError on a dropped stream
        reason = endpoint.scrub(str(exc)) or type(exc).__name__
        print(f"memsweep: lost the log stream of job {job_id}: {reason}", file=sys.stderr)
    info = call(endpoint, job_id, lambda: client.get_job_info(job_id))
    deadline = time.monotonic() + 60
    while str(info.status) not in _TERMINAL and time.monotonic() < deadline:
        time.sleep(1)
        info = call(endpoint, job_id, lambda: client.get_job_info(job_id))
    status = str(info.status)
    detail = f": {endpoint.scrub(info.message)}" if info.message and status != "SUCCEEDED" else ""
    print(f"memsweep: job {job_id} {status}{detail}", file=sys.stderr)
    return 0 if status == "SUCCEEDED" else 1

"""MLflow as a peer in the peak-capture section: its own virtualenv and a sidecar process.

MLflow is not a memsweep dependency, so the benchmark installs it into a virtualenv of
its own on first use (``results/bench/.venv-mlflow``, ignored by git, reused by later
runs) and runs :mod:`mlflow_sidecar` there. Its system metrics are node-wide, so a
process beside the trials sees the same memory as one inside them. If MLflow cannot be
installed (no network, no ``python3.11``), :class:`MlflowUnavailable` says why and the
table says so instead of a number.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from benchlib import REPO, log

DEFAULT_VENV = REPO / "results" / "bench" / ".venv-mlflow"
SIDECAR = Path(__file__).resolve().with_name("mlflow_sidecar.py")
_PACKAGES = ("mlflow", "psutil")


class MlflowUnavailable(Exception):
    """MLflow could not be installed or started; the message says why."""


def _python_of(venv: Path) -> Path:
    return venv / "bin" / "python"


def _importable(python: Path) -> bool:
    if not python.exists():
        return False
    check = subprocess.run(
        [str(python), "-c", "import mlflow, psutil"], capture_output=True, check=False
    )
    return check.returncode == 0


def ensure_mlflow(venv: Path = DEFAULT_VENV, install: bool = True) -> Path:
    """The Python of a virtualenv with MLflow, created and installed on first use.

    Without ``install`` (the smoke profile: pip takes about a minute), a missing
    virtualenv is stood in for by this Python if it has MLflow (memsweep's dev install has
    ``mlflow-skinny``, whose system metrics are the same code). Raises
    :class:`MlflowUnavailable` if neither is there or the install fails."""
    python = _python_of(venv)
    if _importable(python):
        return python
    if not install:
        if _importable(Path(sys.executable)):
            return Path(sys.executable)
        raise MlflowUnavailable(
            f"no MLflow virtualenv at {venv} and none in this Python (this profile does "
            "not install it; `make bench` does, on first use)"
        )
    base = shutil.which("python3.11") or sys.executable
    log(f"peak: installing MLflow into {venv} (first use only, a minute or two)")
    steps = [
        [base, "-m", "venv", "--clear", str(venv)],
        [str(python), "-m", "pip", "install", "--quiet", *_PACKAGES],
    ]
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, text=True, check=False, timeout=1200)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise MlflowUnavailable(f"{' '.join(step[:4])}: {exc}") from None
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            errors = [line for line in lines if "ERROR" in line] or lines[-1:]
            raise MlflowUnavailable(f"{' '.join(step[:4])} failed: {' '.join(errors)[:300]}")
    if not _importable(python):
        raise MlflowUnavailable(f"MLflow installed into {venv} but does not import")
    return python


@dataclass
class MlflowSidecar:
    """A running sidecar; :meth:`finish` stops it and returns what MLflow logged."""

    process: subprocess.Popen[str]
    stderr_path: Path

    @classmethod
    def start(cls, python: Path, tracking_dir: Path) -> MlflowSidecar:
        tracking_dir.mkdir(parents=True, exist_ok=True)
        stderr_path = tracking_dir / "sidecar.stderr"
        stderr: IO[str] = stderr_path.open("w")
        process = subprocess.Popen(
            [str(python), str(SIDECAR), str(tracking_dir / "mlruns")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        stderr.close()
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if line != "ready":
            process.kill()
            process.wait()
            raise MlflowUnavailable(
                f"the MLflow sidecar did not start: {stderr_path.read_text()[-500:]}"
            )
        return cls(process, stderr_path)

    def finish(self) -> dict[str, Any]:
        try:
            out, _ = self.process.communicate(input="", timeout=120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise MlflowUnavailable("the MLflow sidecar did not stop within 120 s") from None
        if self.process.returncode != 0 or not out.strip():
            raise MlflowUnavailable(
                f"the MLflow sidecar failed: {self.stderr_path.read_text()[-500:]}"
            )
        return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def readings(logged: dict[str, Any]) -> list[tuple[float, float]]:
    """(moment sampled, used bytes) for every value MLflow logged."""
    sampled_at = logged["sampled_at"]
    out = []
    for entry in logged["logged"]:
        step = int(entry["step"])
        if step < len(sampled_at):
            out.append((float(sampled_at[step]), float(entry["megabytes"]) * 1e6))
    return out

"""The growth detector's corpus: real plateau series, and known growth planted into copies.

A corpus case is one role of one real trial, cut from the moment its buffer filled (its
plateau, :func:`memsweep.analyze.leaks.plateau_series`), optionally shortened to a
plateau of ``L`` env steps, with one of these added to its RSS:

* a sustained leak: ``rate · env steps`` (rate in bytes per env step);
* a one-time step: ``height`` bytes from a given env step on;
* a settling curve: ``amplitude · (1 − exp(−env steps / τ))``.

What the real series already does is labelled by hand from the full-length runs
(:data:`KNOWN_GROWTH`): the rest are leak-free (they may settle, which the detector must
not call a leak). ``benchmarks/bench_growth.py`` measures the detector on these cases
and ``tests/analyze/test_growth_corpus.py`` runs a few.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from memsweep.analyze.analysis import AnalysisOptions, analyze_results
from memsweep.analyze.growth import GrowthFit, GrowthRule, classify_growth
from memsweep.analyze.leaks import plateau_series

MB = 1e6

KNOWN_GROWTH = {
    "tf2-eager": "TF eager (old API stack): the process that samples grows ~60-80 MB per 1k "
    "env steps (the env runners, or the trainable without them)",
    "tf2": "TF2 (old API stack): remote env runners grow ~0.37 MB per 1k env steps each",
}
"""framework → the real growth measured on the corpus's runs (see
:attr:`CorpusSeries.growing`); every other series is leak-free."""


@dataclass(frozen=True)
class CorpusSeries:
    """One real role's plateau: env steps since the buffer filled, RSS bytes, seconds."""

    run: str
    """Results folder name."""
    trial_id: str
    role: str
    framework: str
    roles: tuple[str, ...]
    """Every role of the trial (a ``total`` grows when one of these does)."""
    env_steps: np.ndarray
    mem_bytes: np.ndarray
    t_s: np.ndarray

    @property
    def name(self) -> str:
        return f"{self.run}/{self.trial_id}/{self.role}"

    @property
    def growing(self) -> bool:
        """True when the real series has growth of its own (:data:`KNOWN_GROWTH`)."""
        runners = "env_runner" in self.roles
        if self.framework == "tf2-eager":
            return self.role in ("env_runner", "total") or not runners
        if self.framework == "tf2":
            return runners and self.role in ("env_runner", "total")
        return False

    @property
    def plateau_env_steps(self) -> float:
        finite = self.env_steps[np.isfinite(self.env_steps)]
        return float(finite.max()) if len(finite) else 0.0

    def window(self, length_env_steps: float) -> CorpusSeries:
        """The first ``length_env_steps`` of the plateau."""
        keep = self.env_steps <= length_env_steps
        return replace(
            self, env_steps=self.env_steps[keep], mem_bytes=self.mem_bytes[keep], t_s=self.t_s[keep]
        )

    def with_leak(self, bytes_per_step: float) -> CorpusSeries:
        return replace(self, mem_bytes=self.mem_bytes + bytes_per_step * self.env_steps)

    def with_step(self, height_bytes: float, at_env_steps: float) -> CorpusSeries:
        return replace(
            self, mem_bytes=self.mem_bytes + height_bytes * (self.env_steps >= at_env_steps)
        )

    def with_settling(self, amplitude_bytes: float, tau_env_steps: float) -> CorpusSeries:
        curve = amplitude_bytes * (1 - np.exp(-np.maximum(self.env_steps, 0) / tau_env_steps))
        return replace(self, mem_bytes=self.mem_bytes + curve)

    def classify(self, rule: GrowthRule | None = None) -> GrowthFit:
        return classify_growth(self.env_steps, self.mem_bytes, self.t_s, rule)


def load_series(folder: Path | str, roles: Iterable[str] | None = None) -> list[CorpusSeries]:
    """Every role's plateau series of every trial in a results folder that has a plateau.

    A trial with one role only yields that role (its ``total`` is the same series)."""
    analysis = analyze_results(str(folder), AnalysisOptions())
    data = analysis.data
    series = dict(tuple(data.series.groupby(["trial_id", "role"], sort=False)))
    progress = dict(tuple(data.progress.groupby("trial_id", sort=False)))
    wanted = set(roles) if roles is not None else None
    out = []
    for trial in analysis.trials:
        names = tuple(r.role for r in trial.roles if r.role != "total")
        for role in trial.roles:
            if role.role == "total" and len(names) == 1:
                continue
            if wanted is not None and role.role not in wanted:
                continue
            rows = series.get((trial.trial_id, role.role))
            if rows is None or trial.trial_id not in progress:
                continue
            cut = plateau_series(trial, rows, progress[trial.trial_id])
            if cut is None:
                continue
            out.append(
                CorpusSeries(
                    run=Path(str(folder)).name,
                    trial_id=trial.trial_id,
                    role=role.role,
                    framework=str(trial.factors.get("framework")),
                    roles=names,
                    env_steps=cut.env_steps,
                    mem_bytes=cut.mem_bytes,
                    t_s=cut.t_s,
                )
            )
    return out


def load_corpus(folders: Sequence[Path | str]) -> list[CorpusSeries]:
    """:func:`load_series` over several results folders (missing folders are skipped)."""
    out: list[CorpusSeries] = []
    for folder in folders:
        if Path(str(folder)).exists():
            out += load_series(folder)
    return out

"""Each trial's memory as the collector has seen it so far, and where its processes ran.

:class:`TrialProcesses` is fed every written batch of attributed samples; Tune's thread
reads :class:`TrialMemory` back (the figures a Tune result gains), the kill evidence asks
which role and node a killed pid had.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from memsweep import result_keys as keys
from memsweep.store.peaks import role_memory, trial_peaks_arrow
from memsweep.units import MB


@dataclass(frozen=True, slots=True)
class TrialMemory:
    """A trial's memory from memsweep's latest samples of its processes."""

    rss_bytes: int
    """Σ RSS of the trial's processes in their node's latest sampling round."""
    peak_bytes: int
    """The trial's peak so far: the largest Σ PSS of its processes in any round with a
    PSS reading (the one definition, :mod:`memsweep.store.peaks`); 0 before the first."""
    hwm_bytes: int
    """Σ over every process the trial has had of its VmHWM: spikes between samples show,
    shared pages count once per process."""
    roles: tuple[tuple[str, int, int], ...] = ()
    """(role, Σ PSS now, largest Σ PSS so far) per role of the trial, bytes, and ``total``."""

    @property
    def pss_bytes(self) -> int | None:
        """Σ PSS of the trial's processes now: the ``total`` role's current figure; None
        before the first PSS reading."""
        return next((current for role, current, _ in self.roles if role == "total"), None)

    def as_result(self) -> dict[str, int]:
        """The Tune result keys (:mod:`memsweep.result_keys`) for these figures: the same
        ``memory/*`` keys memsweep's own trainable reports (``pss`` from the first PSS
        reading on), and the per-role ones."""
        result = {
            keys.RSS_BYTES: self.rss_bytes,
            keys.PEAK_BYTES: self.peak_bytes,
            keys.HWM_BYTES: self.hwm_bytes,
            keys.PEAK_MB: round(self.peak_bytes / MB),
        }
        if self.pss_bytes is not None:
            result[keys.PSS_BYTES] = self.pss_bytes
            result[keys.PSS_MB] = round(self.pss_bytes / MB)
        for role, current, peak in self.roles:
            current_key, peak_key = keys.role_keys(role)
            result[current_key] = current
            result[peak_key] = peak
        return result


ProcessSeen = tuple[int, str, str, float | None]
"""A trial's process: (pid, node id, role, create time)."""


class TrialProcesses:
    """Per trial: its processes (node, role, create time) and its memory so far.

    **Thread safety.** :meth:`remember` runs on the collector thread; :meth:`memory` may
    be called from Tune's thread (a lock guards the figures it reads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, int], tuple[str, str, float | None]] = {}
        self._peaks: dict[tuple[str, str, int, float | None], int] = {}
        self._pss_peaks: dict[str, int] = {}
        self._memory: dict[str, TrialMemory] = {}
        self._roles: dict[tuple[str, str], tuple[int, int]] = {}
        """(trial, role) → (Σ PSS now, largest Σ PSS so far), bytes."""

    def remember(self, samples: pa.Table) -> None:
        """Where each trial process ran, in which role (asked about when it is killed),
        and each trial's memory now (:class:`TrialMemory`), from rows of
        :data:`memsweep.store.SAMPLES`."""
        rows = samples.filter(pc.is_valid(samples["trial_id"]))
        if not rows.num_rows:
            return
        for row in (
            rows.group_by(["trial_id", "pid", "node_id", "role", "create_time"])
            .aggregate([("hwm_bytes", "max")])
            .to_pylist()
        ):
            self._seen[(row["trial_id"], row["pid"])] = (
                row["node_id"],
                row["role"],
                row["create_time"],
            )
            process = (row["trial_id"], row["node_id"], row["pid"], row["create_time"])
            self._peaks[process] = max(self._peaks.get(process, 0), row["hwm_bytes_max"] or 0)
        latest = rows.group_by(["trial_id", "node_id"]).aggregate([("ts", "max")])
        rss: dict[str, int] = {}
        for last in latest.to_pylist():
            round_rows = rows.filter(
                pc.and_(
                    pc.and_(
                        pc.equal(rows["trial_id"], last["trial_id"]),
                        pc.equal(rows["node_id"], last["node_id"]),
                    ),
                    pc.equal(rows["ts"], last["ts_max"]),
                )
            )
            total = pc.sum(round_rows["rss_bytes"]).as_py() or 0
            rss[last["trial_id"]] = rss.get(last["trial_id"], 0) + int(total)
        for trial_id, found in trial_peaks_arrow(rows).items():
            if found.peak_bytes is not None:
                self._pss_peaks[trial_id] = max(self._pss_peaks.get(trial_id, 0), found.peak_bytes)
        for (trial_id, role), seen in role_memory(rows).items():
            before = self._roles.get((trial_id, role), (0, 0))
            self._roles[(trial_id, role)] = (
                seen.current_bytes if seen.current_bytes is not None else before[0],
                max(before[1], seen.peak_bytes or 0),
            )
        with self._lock:
            for trial_id, total in rss.items():
                hwm = sum(v for k, v in self._peaks.items() if k[0] == trial_id)
                roles = sorted((r, *v) for (t, r), v in self._roles.items() if t == trial_id)
                current = sum(role[1] for role in roles)
                # One peak for the trial and its total (the roles' latest rounds may be
                # later than the last round the peak query saw).
                peak = max(self._pss_peaks.get(trial_id, 0), current)
                roles.append(("total", current, peak))
                self._memory[trial_id] = TrialMemory(total, peak, max(hwm, total), tuple(roles))

    def memory(self, trial_id: str) -> TrialMemory | None:
        """The trial's memory at the latest batch, or None before its first sample."""
        with self._lock:
            return self._memory.get(trial_id)

    def process_of(self, trial_id: str, pids: Iterable[int]) -> ProcessSeen | None:
        """The first of ``pids`` seen in ``trial_id``: (pid, node id, role, create time)."""
        for pid in pids:
            seen = self._seen.get((trial_id, pid))
            if seen is not None:
                return (pid, *seen)
        return None

    def trials(self) -> set[str]:
        """The trials with at least one attributed process."""
        return {trial for trial, _pid in self._seen}

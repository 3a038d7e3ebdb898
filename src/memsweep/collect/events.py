"""One row of the ``events`` table: what happened to a node, a sampler or a trial."""

from __future__ import annotations

from dataclasses import dataclass, field

from memsweep.collect.trials import now_us


@dataclass(frozen=True, slots=True)
class Event:
    """An event as :data:`memsweep.store.schema.EVENTS` stores it."""

    kind: str
    """``sampler_started``, ``node_added``, ``trial_ended``, … (the schema lists them)."""
    node_id: str | None = None
    trial_id: str | None = None
    detail: str | None = None
    ts: int = field(default_factory=now_us)
    """When it was noticed, UTC µs."""

    def as_record(self) -> dict[str, object]:
        """The row for :meth:`memsweep.store.ResultsWriter.append_rows`."""
        return {
            "ts": self.ts,
            "kind": self.kind,
            "node_id": self.node_id,
            "trial_id": self.trial_id,
            "detail": self.detail,
        }

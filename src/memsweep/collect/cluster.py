"""What the collector reads from Ray itself: the cluster's nodes, the GCS actor table and
the driver's identity. Each is one call into Ray, imported lazily (importing memsweep
loads no Ray)."""

from __future__ import annotations

import logging
import os
from typing import Any

from memsweep.collect.attribution import ActorInfo

log = logging.getLogger(__name__)


def gcs_actor_table() -> list[tuple[tuple[str, int], ActorInfo]]:
    """Every actor with a process, from the GCS: ((node id, pid), actor).

    Read through the driver's GCS connection (``ray._private.state``, what
    ``ray.util.state`` serves through the dashboard), so it works with
    ``ray.init(include_dashboard=False)``. Dead actors are listed too: their last pid
    still names the samples taken before they died.
    """
    from ray._private.state import state
    from ray.core.generated import gcs_pb2

    accessor = state._connect_and_get_accessor()
    table_data: Any = gcs_pb2.ActorTableData  # type: ignore[attr-defined]
    alive = table_data.ActorState.Value("ALIVE")
    out = []
    for raw in accessor.get_actor_table(None, None):
        actor = table_data.FromString(raw)
        if not actor.pid or not actor.address.node_id:
            continue
        info = ActorInfo(
            actor_id=actor.actor_id.hex(),
            class_name=actor.class_name,
            placement_group_id=actor.placement_group_id.hex() or None,
            alive=actor.state == alive,
            job_id=actor.job_id.hex(),
            owner_worker_id=actor.owner_address.worker_id.hex(),
            worker_id=actor.address.worker_id.hex(),
        )
        out.append(((actor.address.node_id.hex(), int(actor.pid)), info))
    return out


def worker_exit(node_id: str, pid: int) -> tuple[str | None, str | None]:
    """Ray's word on how the worker process ``pid`` of ``node_id`` exited: (exit type,
    exit detail) from the GCS worker table, e.g. ``("NODE_OUT_OF_MEMORY", "1 worker(s)
    were killed due to the node running low on memory. …")``; (None, None) when the
    table has no dead worker with that pid there (not a Ray worker, or not dead yet).

    The same rows ``ray.util.state.list_workers(detail=True)`` serves (fields
    ``exit_type``, ``exit_detail``) but read through the driver's GCS connection, so it
    works without a dashboard (``include_dashboard=False``). The latest row wins when
    a pid was reused."""
    from ray._private.state import state
    from ray.core.generated import common_pb2, gcs_pb2

    try:
        accessor = state._connect_and_get_accessor()
        rows = accessor.get_worker_table()
    except Exception as exc:
        log.warning("memsweep: Ray's worker table not read: %s", exc)
        return None, None
    table_data: Any = gcs_pb2.WorkerTableData  # type: ignore[attr-defined]
    exit_types: Any = common_pb2.WorkerExitType  # type: ignore[attr-defined]
    best: tuple[int, str | None, str | None] | None = None
    for raw in rows:
        worker = table_data.FromString(raw)
        if worker.pid != pid or worker.is_alive or worker.worker_address.node_id.hex() != node_id:
            continue
        exit_type = exit_types.Name(worker.exit_type) if worker.HasField("exit_type") else None
        when = int(worker.end_time_ms)
        if best is None or when >= best[0]:
            best = (when, exit_type, worker.exit_detail or None)
    return (None, None) if best is None else (best[1], best[2])


NodeInfo = dict[str, Any]
"""One node as ``ray.nodes()`` reports it (Ray's own untyped dict: ``NodeID``, ``Alive``,
``NodeManagerHostname``, ``NodeManagerAddress``, ``Resources``)."""


def cluster_nodes() -> list[NodeInfo]:
    """``ray.nodes()``: every node the GCS knows, alive or dead."""
    import ray

    return list(ray.nodes())  # type: ignore[no-untyped-call]


def driver_identity() -> tuple[int, str]:
    """The driver's pid and node id, so the head sampler records it as ``driver``."""
    import ray

    return os.getpid(), ray.get_runtime_context().get_node_id()

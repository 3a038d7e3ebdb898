"""What a Ray cluster offers, read before a sweep is run on it (``--address``).

:func:`memsweep.spec.runtime.runtime_findings` checks a sweep against a
:class:`~memsweep.spec.runtime.Machine`; for the local machine that is psutil's view,
for a cluster it is this module's: the cluster's alive nodes as the GCS reports them
(``ray.nodes()``), joined briefly and left before the sweep joins for good.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from memsweep.errors import ClusterError
from memsweep.spec.runtime import Machine


def machine_of_nodes(
    nodes: list[dict[str, Any]], available: dict[str, float], where: str
) -> Machine:
    """A cluster as one :class:`Machine`: CPUs summed over the alive nodes; memory is
    what Ray can place there, its ``memory`` and ``object_store_memory`` resources
    summed (bytes; Ray sizes them from each node's memory when it starts);
    ``available_bytes`` the part of those not held by running tasks and actors."""
    alive = [node for node in nodes if node.get("Alive")]
    cpus = sum(float(node.get("Resources", {}).get("CPU", 0)) for node in alive)
    memory = sum(
        int(node.get("Resources", {}).get("memory", 0))
        + int(node.get("Resources", {}).get("object_store_memory", 0))
        for node in alive
    )
    free = int(available.get("memory", 0)) + int(available.get("object_store_memory", 0))
    return Machine(cpus, memory, free, where)


def cluster_machine(address: str) -> Machine:
    """Join the cluster at ``address`` (what ``ray.init(address=…)`` takes), read its
    nodes and free resources, and leave. Raises :class:`~memsweep.errors.ClusterError`
    (exit 4) when it cannot be reached."""
    import ray

    def read() -> Machine:
        nodes = list(ray.nodes())  # type: ignore[no-untyped-call]
        free = dict(ray.available_resources())  # type: ignore[no-untyped-call]
        return machine_of_nodes(nodes, free, f"the cluster at {address}")

    if ray.is_initialized():
        return read()
    try:
        reason = unreachable(address)
        if reason is not None:
            raise ConnectionError(reason)
        # WARNING: Ray's "Connecting to existing Ray cluster" lines are not memsweep's answer.
        ray.init(
            address=address,
            log_to_driver=False,
            namespace="memsweep-check",
            logging_level=logging.WARNING,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ClusterError(
            f"Cannot reach the Ray cluster at {address}: {first}. Check --address "
            "(host:port of its GCS, or ray://…) and that the cluster is up"
        ) from None
    try:
        return read()
    finally:
        ray.shutdown()


def unreachable(address: str) -> str | None:
    """Why nothing answers at ``HOST:PORT`` (checked in seconds, where ``ray.init`` would
    retry for minutes); None if something does, or for ``auto`` and ``ray://`` forms."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or "://" in host:
        return None
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            return None
    except OSError as exc:
        return exc.strerror or str(exc)

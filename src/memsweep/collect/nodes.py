"""The samplers of a cluster: one :class:`~memsweep.collect.sampler.NodeSampler` per live
node, started as nodes join, marked gone as they leave, drained together.

:class:`SamplerFleet` runs on the collector thread. It calls nobody back: each step
returns the :class:`~memsweep.collect.events.Event` rows it caused (a node added, a
sampler lost and restarted) for the collector to write.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from memsweep.collect.cluster import cluster_nodes
from memsweep.collect.events import Event
from memsweep.collect.kernel import KernelKill
from memsweep.collect.sampler import SAMPLER_NAME_PREFIX, NodeSampler, SamplerConfig, SamplerDrain
from memsweep.collect.trials import now_us

log = logging.getLogger(__name__)


@dataclass
class NodeState:
    """One node as the ``nodes`` table records it, and its sampler actor (if running)."""

    node_id: str
    hostname: str
    ip: str
    is_head: bool
    total_bytes: int | None
    first_seen: int
    last_seen: int
    state: str = "alive"
    sampler: Any = None
    """The node's sampler actor handle (Ray's ``ActorHandle``), None when it has none."""
    used_bytes: int | None = None
    """The node's used memory in its latest drained round."""
    available_bytes: int | None = None
    """The node's available memory in its latest drained round."""

    def as_record(self) -> dict[str, object]:
        """The row of :data:`memsweep.store.schema.NODES`."""
        return {
            "node_id": self.node_id,
            "hostname": self.hostname,
            "ip": self.ip,
            "is_head": self.is_head,
            "total_bytes": self.total_bytes,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "state": self.state,
        }


class SamplerFleet:
    """Every node's sampler; see the module docstring."""

    def __init__(self, config: SamplerConfig) -> None:
        self.config = config
        self.nodes: dict[str, NodeState] = {}

    def _start_sampler(self, node: NodeState) -> Any:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        name = f"{SAMPLER_NAME_PREFIX}{node.node_id}"
        with contextlib.suppress(ValueError):
            ray.kill(ray.get_actor(name))
        actor_cls = ray.remote(NodeSampler)
        return actor_cls.options(
            name=name,
            num_cpus=0,
            max_restarts=0,
            max_concurrency=4,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node.node_id, soft=False),
        ).remote(self.config, node.node_id, node.is_head)

    def follow_membership(self) -> list[Event]:
        """A node that joined gets a sampler; a node that died is marked dead (its samples
        up to then are kept)."""
        events: list[Event] = []
        now = now_us()
        alive_ids = set()
        for info in cluster_nodes():
            node_id = info["NodeID"]
            if not info.get("Alive", info.get("alive")):
                continue
            alive_ids.add(node_id)
            node = self.nodes.get(node_id)
            if node is None:
                resources = info.get("Resources", {})
                node = NodeState(
                    node_id=node_id,
                    hostname=info.get("NodeManagerHostname", ""),
                    ip=info.get("NodeManagerAddress", ""),
                    is_head="node:__internal_head__" in resources,
                    total_bytes=None,
                    first_seen=now,
                    last_seen=now,
                )
                self.nodes[node_id] = node
                events.append(Event("node_added", node_id=node_id, detail=node.hostname))
            node.last_seen = now
            if node.state != "alive":
                node.state = "alive"
            if node.sampler is None:
                node.sampler = self._start_sampler(node)
                events.append(Event("sampler_started", node_id=node_id))
        for node_id, node in self.nodes.items():
            if node_id not in alive_ids and node.state == "alive":
                node.state = "dead"
                node.sampler = None
                events.append(
                    Event("node_removed", node_id=node_id, detail="node left the cluster")
                )
        return events

    def drain_all(self, final: bool, deadline_s: float) -> tuple[list[SamplerDrain], list[Event]]:
        """Every sampler's rows since its last drain (``final``: its last rows, and it
        stops), within one deadline; a sampler that did not answer is restarted if its
        node is alive, its node marked dead if not."""
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError

        events: list[Event] = []
        live = [(node, node.sampler) for node in self.nodes.values() if node.sampler is not None]
        if not live:
            return [], events
        method = "stop" if final else "drain"
        refs = [getattr(sampler, method).remote() for _, sampler in live]
        # One deadline for all samplers: one on a node that just died (before the GCS
        # marks it dead) never answers, and must not hold up the others.
        ray.wait(refs, num_returns=len(refs), timeout=deadline_s)
        drained: list[SamplerDrain] = []
        for (node, _sampler), ref in zip(live, refs, strict=True):
            try:
                drained.append(ray.get(ref, timeout=0))
            except (RayActorError, GetTimeoutError, ray.exceptions.RayError) as exc:
                still_alive = any(
                    n["NodeID"] == node.node_id and n.get("Alive") for n in cluster_nodes()
                )
                node.sampler = None
                if still_alive:
                    events.append(
                        Event(
                            "sampler_lost",
                            node_id=node.node_id,
                            detail=f"{type(exc).__name__}: samples since the last drain are lost",
                        )
                    )
                if still_alive and not final:
                    node.sampler = self._start_sampler(node)
                    events.append(Event("sampler_restarted", node_id=node.node_id))
                elif not still_alive:
                    node.state = "dead"
                    events.append(Event("node_removed", node_id=node.node_id, detail="node died"))
        for batch in drained:
            self._note_memory(batch)
        return drained, events

    def _note_memory(self, batch: SamplerDrain) -> None:
        node = self.nodes.get(batch.node_id)
        if node is None or not batch.node_samples.num_rows:
            return
        node.total_bytes = int(batch.node_samples["total_bytes"][0].as_py() or 0)
        last = batch.node_samples.slice(batch.node_samples.num_rows - 1)
        node.used_bytes = last["used_bytes"][0].as_py()
        node.available_bytes = last["available_bytes"][0].as_py()

    def node_memory(self, node_id: str) -> tuple[int | None, int | None]:
        """(used, available) bytes of ``node_id`` in its latest drained round."""
        node = self.nodes.get(node_id)
        return (None, None) if node is None else (node.used_bytes, node.available_bytes)

    def used_bytes(self) -> dict[str, int]:
        """Node id → its used memory in its latest drained round (nodes with one)."""
        return {n.node_id: n.used_bytes for n in self.nodes.values() if n.used_bytes is not None}

    def kernel_oom_killed(
        self, node_id: str, pid: int, create_time: float | None
    ) -> KernelKill | None:
        """Ask ``node_id``'s sampler whether its kernel OOM-killed ``pid`` (and in which
        memory cgroup); None if the sampler cannot be asked."""
        import ray

        node = self.nodes.get(node_id)
        if node is None or node.sampler is None:
            return None
        try:
            answer = ray.get(node.sampler.kernel_oom_killed.remote(pid, create_time), timeout=10)
        except Exception as exc:
            log.warning("memsweep: kernel log of node %s not read: %s", node_id, exc)
            return None
        return answer if isinstance(answer, KernelKill) else None

    def stop_all(self) -> None:
        """Kill every sampler actor (after the final drain)."""
        import ray

        for node in self.nodes.values():
            if node.sampler is not None:
                with contextlib.suppress(Exception):
                    ray.kill(node.sampler)
                node.sampler = None

    def records(self) -> list[dict[str, object]]:
        """The ``nodes`` table's rows."""
        return [node.as_record() for node in self.nodes.values()]

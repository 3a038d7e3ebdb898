"""Known-answer workloads: Tune trainables whose memory is known in advance.

A measurement is only trusted once it has been checked against a truth. These trainables
allocate and touch a known number of bytes (``numpy.ones`` writes every page), hold them,
and raise their memory by a known amount for a known time; tests and ``make bench``
compare what memsweep recorded with what they did.
"""

from __future__ import annotations

import os
import time
from typing import Any


def allocate_and_spike(config: dict[str, Any]) -> None:
    """Tune function trainable: rest, hold ``hold_bytes``, spike by ``spike_bytes`` for
    ``spike_s`` seconds (``spikes`` times, ``gap_s`` apart), rest; reports wall-clock marks."""
    import numpy as np
    from ray import tune

    rest_s = float(config.get("rest_s", 2.0))
    marks: dict[str, float] = {}
    time.sleep(rest_s)
    marks["t_before"] = time.time()
    held = np.ones(int(config["hold_bytes"]), dtype=np.uint8)
    time.sleep(rest_s)
    marks["t_allocated"] = time.time()
    spikes = int(config.get("spikes", 1))
    for index in range(spikes):
        spike = np.ones(int(config["spike_bytes"]), dtype=np.uint8)
        marks[f"t_spike_{index}"] = time.time()
        time.sleep(float(config.get("spike_s", 0.05)))
        del spike
        if index + 1 < spikes:
            time.sleep(float(config.get("gap_s", 0.5)))
    marks["t_spiked"] = time.time()
    time.sleep(rest_s)
    tune.report({"pid": os.getpid(), "held_first": int(held[0]), **marks})


def grow_steadily(config: dict[str, Any]) -> None:
    """Tune function trainable: rest ``rest_s``, then allocate and touch ``step_bytes``
    every ``step_s`` up to ``max_bytes``, hold ``hold_s``, report once. Memory that grows
    at a known rate until something (a budget, an OOM killer) stops it.

    ``cgroup_procs``: a cgroup's ``cgroup.procs`` file to move this process into first,
    so that the kernel OOM-kills it at that cgroup's memory limit (fault-injection tests).
    """
    import numpy as np
    from ray import tune

    if config.get("cgroup_procs"):
        with open(config["cgroup_procs"], "w", encoding="ascii") as handle:  # noqa: PTH123
            handle.write(str(os.getpid()))
    time.sleep(float(config.get("rest_s", 1.0)))
    held = []
    total = 0
    while total < int(config["max_bytes"]):
        held.append(np.ones(int(config["step_bytes"]), dtype=np.uint8))
        total += int(config["step_bytes"])
        time.sleep(float(config.get("step_s", 0.1)))
    time.sleep(float(config.get("hold_s", 0.5)))
    tune.report({"pid": os.getpid(), "held_bytes": total, "chunks": len(held)})


def share_an_object(config: dict[str, Any]) -> None:
    """Tune function trainable: start ``readers`` actors (in the trial's placement group),
    ``ray.put`` ``object_bytes`` into Ray's object store in ``chunk_bytes`` pieces (so
    no private copy of the whole is ever held), have every reader map and touch all of
    it, hold ``hold_s``, report wall-clock marks. The object's pages are shared by the
    trainable and its readers: counted once by Σ PSS, once per process by Σ RSS/VmHWM."""
    import numpy as np
    import ray
    from ray import tune

    @ray.remote(num_cpus=0)
    class Reader:
        def touch(self, refs: list[Any]) -> int:
            # ray.get of numpy arrays maps the object store's pages read-only (no copy);
            # summing reads every page, so each becomes resident in this process.
            self.held = ray.get(refs)
            return int(sum(int(part.sum()) for part in self.held))

        def pid(self) -> int:
            return os.getpid()

    readers = [Reader.remote() for _ in range(int(config.get("readers", 2)))]  # type: ignore[attr-defined]
    pids = ray.get([reader.pid.remote() for reader in readers])
    rest_s = float(config.get("rest_s", 3.0))
    time.sleep(rest_s)
    marks = {"t_before": time.time()}
    total, chunk = int(config["object_bytes"]), int(config.get("chunk_bytes", 32 * 2**20))
    refs = [
        ray.put(np.ones(min(chunk, total - start), dtype=np.uint8))
        for start in range(0, total, chunk)
    ]
    held = ray.get(refs)
    mine = int(sum(int(part.sum()) for part in held))
    sums = ray.get([reader.touch.remote(refs) for reader in readers])
    marks["t_shared"] = time.time()
    time.sleep(float(config.get("hold_s", 4.0)))
    tune.report({"pid": os.getpid(), "reader_pids": pids, "sums": [mine, *sums], **marks})

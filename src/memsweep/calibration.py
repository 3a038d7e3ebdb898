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

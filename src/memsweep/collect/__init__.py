"""Sampling and attribution: :mod:`~memsweep.collect.probe` (one process's and one node's
memory from ``/proc``), :mod:`~memsweep.collect.sampler` (the per-node sampler actor),
:mod:`~memsweep.collect.attribution` (process → trial and role),
:mod:`~memsweep.collect.collector` (drain, attribute, write Parquet; with
:mod:`~memsweep.collect.nodes`, :mod:`~memsweep.collect.cluster`,
:mod:`~memsweep.collect.sample_rows`, :mod:`~memsweep.collect.memory`,
:mod:`~memsweep.collect.events`), :mod:`~memsweep.collect.trials` (the trials table),
:mod:`~memsweep.collect.faults` (kill evidence, memory limits) and
:mod:`~memsweep.collect.callback` (the thin Tune callback)."""

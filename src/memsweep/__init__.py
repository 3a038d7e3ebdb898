"""memsweep: why does my RLlib training's RAM grow, and what will a bigger run need?

The package is folders by stage of the data path; a stage imports only from stages
before it (``import-linter`` contracts in ``pyproject.toml``):

- :mod:`memsweep.spec`: sweep file → typed, validated study;
- :mod:`memsweep.store`: the results-folder contract (Parquet schemas, writer, reader);
- :mod:`memsweep.collect`: probe, per-node sampler actor, attribution, collector, the
  thin Tune callback;
- :mod:`memsweep.run`: the study on Ray, Tune and RLlib (trainable, workloads, Ray jobs);
- :mod:`memsweep.budget`: the budget search, an application on a sweep;
- :mod:`memsweep.analyze`: numbers only (phases, trends, fits, predictions);
- :mod:`memsweep.report`: what people read (report files, plots, run summary);
- :mod:`memsweep.claims`: the claims study, an application on the analysis;
- :mod:`memsweep.cli`: the only command line.

The public API, for a ``Tuner`` of your own (imported on first use, so that
``import memsweep`` stays cheap and loads no Ray):

- :class:`MemoryCallback`: Tune callback sampling every trial's processes into a results
  folder that ``memsweep analyze`` reads;
- :func:`survive_oom_kills`: context manager around ``tuner.fit()`` so that a trial Ray's
  memory monitor kills fails alone (recorded ``oom_killed``) instead of ending the run;
- :mod:`result_keys`: the names of the memory keys added to every Tune result.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from memsweep import result_keys

if TYPE_CHECKING:
    from memsweep.collect.callback import MemoryCallback
    from memsweep.run.workarounds.tune import survive_oom_kills

__version__ = "0.1.0"
__all__ = ["MemoryCallback", "__version__", "result_keys", "survive_oom_kills"]

_LAZY = {
    "MemoryCallback": "memsweep.collect.callback",
    "survive_oom_kills": "memsweep.run.workarounds.tune",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'memsweep' has no attribute {name!r}")

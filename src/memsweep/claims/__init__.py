"""The claims study, an application on the analysis: :mod:`~memsweep.claims.table` (typed
rows), :mod:`~memsweep.claims.build` (verdict rules, per-claim fits, the registry),
:mod:`~memsweep.claims.render` (claims.md/json), :mod:`~memsweep.claims.plot` and
:mod:`~memsweep.claims.runner` (running the claim sweeps)."""

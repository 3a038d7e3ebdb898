"""Budget search: the largest value of a factor whose trial's peak stays under a budget,
an application on top of :mod:`memsweep.run` (:mod:`~memsweep.budget.search`: the Optuna
sampler, Tune searcher and stopper; :mod:`~memsweep.budget.report`: what it found;
:mod:`~memsweep.budget.app`: running it)."""

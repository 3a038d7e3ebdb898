"""Helpers shared by the tests and the benchmarks: known-answer trainables
(:mod:`~memsweep.testing.calibration`) and synthetic results folders
(:mod:`~memsweep.testing.synthetic`). Nothing in the package imports them."""

"""Workarounds of upstream RLlib and Tune behaviour, one documented each, with a test
that shows when upstream changes."""

"""Env-runner classes per framework. This package's ``__init__`` imports nothing: each
module must set the process's environment before RLlib is first imported there."""

"""User-facing errors.

Anything raised as a `UserError` is a mistake in the user's input (config, data
files, paths). The CLI prints its message as one line on stderr and exits with
code 2, never a traceback. Messages name the config key or file and say what was
received and what is allowed.
"""
from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input; the message is shown as-is on one line."""


class ConfigError(UserError):
    """A config value is missing, unknown or out of range; the message names its key path."""


class DataError(UserError):
    """A labels file, column or data file is unusable; the message names it."""


class SweepFailed(Exception):
    """The sweep ran but produced nothing usable (every trial failed); exit code 1."""


class SweepInterrupted(Exception):
    """Ctrl-C stopped the sweep; its runs are marked KILLED. Exit code 130, like any SIGINT."""

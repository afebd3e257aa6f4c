"""User-facing errors.

Anything raised as a `UserError` is a mistake in the user's input (config, data
files, paths). The CLI prints its message as one line on stderr and exits with
code 2, never a traceback. Messages name the config key or file and say what was
received and what is allowed.
"""
from __future__ import annotations


def first_line(error: BaseException) -> str:
    """An error's message cut to its first line (its type's name if it has none), for one-line reports."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


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

"""User-facing errors.

Anything raised as a `UserError` is a mistake in the user's input (config, data
files, paths). The CLI prints its message as one line on stderr and exits with
code 2, never a traceback. Messages name the config key or file and say what was
received and what is allowed.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any


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


def describe_validation_error(error: Mapping[str, Any], where: str = "") -> str:
    """One line for a pydantic error (an item of `ValidationError.errors()`): the key path
    under `where`, what was received, what is allowed."""
    loc = ".".join([where, *map(str, error["loc"])] if where else map(str, error["loc"])) or "config"
    kind = error["type"]
    received = error.get("input")
    if kind == "missing":
        return f"{loc}: required key is missing"
    if kind in ("literal_error", "union_tag_invalid"):
        return f"{loc}: {error['msg'].replace('Input should be', 'must be')}, got {received!r}"
    if kind == "value_error":
        return f"{loc}: {error['msg'].removeprefix('Value error, ')}"
    if kind == "float_type" and isinstance(received, str):
        return f"{loc}: expected a number, got the text {received!r} (YAML reads 1e-3 as text: write 1.0e-3)"
    message = error["msg"].replace("Input should be", "must be")
    return f"{loc}: {message}, got {received!r} ({type(received).__name__})"

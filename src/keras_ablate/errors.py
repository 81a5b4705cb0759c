"""User-facing errors: each carries a message that names the file, the key and what is valid."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """Bad input from the user (YAML, CSV, CLI flags). The CLI prints it and exits 2."""

    exit_code = 2


class ConfigError(UserError):
    """An invalid experiment file or setting."""


class DataError(UserError):
    """A dataset that cannot be loaded as asked (missing file, bad column, bad bytes...)."""


def suggest(name: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean 'x'?)' for the closest known name, or ''."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


def unknown_name(kind: str, name: object, choices: Iterable[str]) -> str:
    """Message for a name that is not in a registry: lists the known names and the closest."""
    known = sorted(str(c) for c in choices)
    return f"unknown {kind} '{name}'{suggest(str(name), known)}; known: {', '.join(known)}"

"""User-facing errors: one clear line that says what was wrong and what to do."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import TypeVar

T = TypeVar("T")


class PolicygradError(Exception):
    """An error caused by input the user can fix; the CLI prints it as one line."""


class NonFiniteLossError(PolicygradError):
    """A loss or gradient became NaN or inf during an update."""


def suggest(name: str, candidates: Iterable[str]) -> str:
    """Return ` — did you mean 'x'?` for the closest candidate, or an empty string."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" — did you mean '{close[0]}'?" if close else ""


def lookup(name: str, table: Mapping[str, T], kind: str, see: str | None = None) -> T:
    """``table[name]``, or an error naming the closest key and the choices (or the command ``see`` that lists them)."""
    if name not in table:
        choices = f"see: {see}" if see else f"choose from: {', '.join(table)}"
        raise PolicygradError(f"unknown {kind} '{name}'{suggest(name, table)} ({choices})")
    return table[name]

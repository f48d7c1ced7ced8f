"""Checking what a person types into the lab: every bad value becomes one clear line on the page."""

from __future__ import annotations

import math

from policygrad.errors import PolicygradError

#: Above this a softmax policy saturates after one click: nothing is left to see.
MAX_LEARNING_RATE = 100.0


def learning_rate(value: float, maximum: float = MAX_LEARNING_RATE) -> float:
    """A learning rate α: finite, > 0 and at most ``maximum``."""
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise PolicygradError(f"learning rate must be greater than 0 (got {value:g}); try 0.1")
    if value > maximum:
        raise PolicygradError(f"learning rate {value:g} is too large (at most {maximum:g}); try 0.1")
    return value


def count(value: float, name: str, maximum: int, minimum: int = 1) -> int:
    """A whole number of samples, seeds, steps …: between ``minimum`` and ``maximum``."""
    value = float(value)
    if not math.isfinite(value) or value != int(value):
        raise PolicygradError(f"{name} must be a whole number (got {value:g})")
    if not minimum <= value <= maximum:
        raise PolicygradError(f"{name} must be between {minimum:,} and {maximum:,} (got {int(value):,})")
    return int(value)

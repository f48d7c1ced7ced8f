"""Small Streamlit helpers shared by the pages: per-session models, errors on the page, progress bars."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import streamlit as st

from policygrad.errors import PolicygradError

T = TypeVar("T")


def model(key: str, factory: Callable[[], T]) -> T:
    """The page model stored in this browser session under ``key`` (created on first use)."""
    if key not in st.session_state:
        st.session_state[key] = factory()
    return st.session_state[key]


def attempt(action: Callable[..., T], *args: Any, where: Any = None, **kwargs: Any) -> T | None:
    """Run ``action``; a :class:`PolicygradError` (bad input) becomes a red one-line message, not a traceback."""
    try:
        return action(*args, **kwargs)
    except PolicygradError as err:
        (where or st).error(str(err), icon=":material/error:")
        return None


def progress_bar(where: Any = None) -> tuple[Callable[[float, str], None], Callable[[], None]]:
    """A progress bar: ``(update(fraction, text), clear())``."""
    slot = (where or st).empty()

    def update(fraction: float, text: str) -> None:
        slot.progress(min(max(float(fraction), 0.0), 1.0), text=text)

    return update, slot.empty


def intro(title: str, text: str) -> None:
    """The page heading and one paragraph saying what to do and what to look for."""
    st.title(title, anchor=False)
    st.markdown(text)

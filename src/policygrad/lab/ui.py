"""Small Streamlit helpers shared by the pages: session models, errors on the page, progress bars, sample buttons."""

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


def sample_controls(lab: Any, prefix: str, one: str, many: tuple[str, str, int]) -> None:
    """A row of buttons: sample one, sample many (``(label, key suffix, count)``), reset; each runs on ``lab``."""
    buttons = st.columns([1, 1, 1, 3])
    many_label, many_key, count = many
    clicked_one = buttons[0].button(one, key=f"{prefix}_one", type="primary", width="stretch")
    clicked_many = buttons[1].button(many_label, key=f"{prefix}_{many_key}", width="stretch")
    reset = buttons[2].button("Reset", key=f"{prefix}_reset", icon=":material/restart_alt:", width="stretch")
    if reset:
        lab.reset()
    if clicked_one:
        attempt(lab.sample, 1)
    if clicked_many:
        attempt(lab.sample, count)


def intro(title: str, text: str) -> None:
    """The page heading and one paragraph saying what to do and what to look for."""
    st.title(title, anchor=False)
    st.markdown(text)

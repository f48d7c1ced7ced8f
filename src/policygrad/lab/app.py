"""The lab's Streamlit entry point: page set-up and navigation (``policygrad lab`` runs this file)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st
import torch

from policygrad.lab import PAGES

torch.set_num_threads(1)  # tiny tensors: one thread is fastest, and leaves the other cores to the web server
st.set_page_config(page_title="policygrad lab", page_icon="∇", layout="wide")
# Less empty space above each page's title: a laptop screen shows the controls without scrolling.
st.html("<style>[data-testid='stMainBlockContainer'] {padding-top: 3rem; padding-bottom: 2rem;}</style>")
pages = [
    st.Page(
        Path(__file__).parent / "views" / f"{page.slug}.py",
        title=page.title,
        icon=page.icon,
        url_path=None if index == 0 else page.slug,  # the first page is the app's address itself
        default=index == 0,
    )
    for index, page in enumerate(PAGES)
]
st.navigation(pages, position="top").run()

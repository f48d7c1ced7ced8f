"""The interactive lab: the ideas of policy gradients, clickable in a browser.

``policygrad lab [--port N]`` starts a local Streamlit app (install with
``pip install 'policygrad[lab]'``). Every number on its pages is computed by policygrad
itself — :mod:`policygrad.exact`, the estimators, the algorithms and the trainer; the
browser only draws. Each page has a plain-Python model here (state + methods, tested
without a browser) and a thin Streamlit view in ``views/``:

==================  ====================  ==============================================
page                model                 what it shows
==================  ====================  ==============================================
Bandit              ``bandit.py``         one click, one update θ ← θ + α ∇log π(a)·R
REINFORCE sampler   ``sampler.py``        sampled returns G_t beside the exact V(s₀)
Gradient scatter    ``scatter.py``        single-sample ∇J estimates vs the exact ∇J
Baseline            ``baseline.py``       training with and without b(s); variance
Evolution           ``evolution.py``      the chain, each module's source, live training
==================  ====================  ==============================================
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Page:
    """One page of the lab: its script in ``views/``, its title and its URL path."""

    slug: str
    title: str
    icon: str


PAGES: tuple[Page, ...] = (
    Page("bandit", "Bandit", ":material/casino:"),
    Page("sampler", "REINFORCE sampler", ":material/timeline:"),
    Page("scatter", "Gradient scatter", ":material/scatter_plot:"),
    Page("baseline", "Baseline", ":material/compare_arrows:"),
    Page("evolution", "Evolution", ":material/account_tree:"),
)

__all__ = ["PAGES", "Page"]

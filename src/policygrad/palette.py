"""One colour per step of the chain, shared by the experiments' figures and the lab's charts."""

from __future__ import annotations

CHAIN_COLORS: dict[str, str] = {
    "reinforce": "#d62728",
    "reinforce-baseline": "#ff7f0e",
    "actor-critic": "#2ca02c",
    "a2c": "#1f77b4",
    "ppo": "#9467bd",
}

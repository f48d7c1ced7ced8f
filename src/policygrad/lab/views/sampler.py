"""REINFORCE sampler: one sampled episode at a time, its returns G_t, and the spread of G₀ against the exact V(s₀)."""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from policygrad.lab import charts, ui
from policygrad.lab.sampler import GAMMA, RETURN_RANGE, SamplerLab

lab = ui.model("lab.sampler", SamplerLab)

ui.intro(
    "REINFORCE sampler",
    f"Russell & Norvig's 4×3 gridworld (exits +1 and −1, −0.04 per step, moves slip with probability 0.2), "
    f"γ = {GAMMA}, the uniform policy. REINFORCE learns from the return of whole episodes, "
    "Gₜ = rₜ + γ Gₜ₊₁, as if it were the value V(sₜ). **Sample trajectories** and watch the histogram "
    "of G₀: centred on the exact V(s₀), but spread wide — that spread is the variance of REINFORCE.",
)

ui.sample_controls(lab, "sampler", "Sample trajectory", ("Sample 100", "100", 100))

stats = lab.statistics()
left, right = st.columns([2, 3], gap="large")
with left:
    st.subheader("Last episode", anchor=False)
    if lab.last_episode:
        episode = pd.DataFrame(
            [
                {"t": s.t, "state": s.state, "action": s.action, "reward r_t": s.reward, "return G_t": s.return_to_go}
                for s in lab.last_episode
            ]
        )
        st.dataframe(
            episode,
            hide_index=True,
            height=min(38 + 35 * len(episode), 420),
            width="stretch",
            column_config={
                "reward r_t": st.column_config.NumberColumn(format="%+.2f"),
                "return G_t": st.column_config.NumberColumn(format="%+.3f"),
            },
        )
        last = lab.last_episode[0].return_to_go
        st.caption(f"{len(lab.last_episode)} steps; this episode's G₀ = {last:+.3f}.")
    else:
        st.caption("No episode yet: click **Sample trajectory**.")
with right:
    st.subheader(f"Returns G₀ of {stats['episodes']:,} episodes", anchor=False)
    st.altair_chart(charts.returns_histogram(lab.returns, stats["exact"], stats["mean"], RETURN_RANGE), width="stretch")
    metrics = st.columns(4)
    metrics[0].metric("episodes", f"{stats['episodes']:,}")
    metrics[1].metric("exact V(s₀)", f"{stats['exact']:+.3f}")
    metrics[2].metric("mean of G₀", "–" if math.isnan(stats["mean"]) else f"{stats['mean']:+.3f}")
    metrics[3].metric("std of one G₀", "–" if math.isnan(stats["std"]) else f"{stats['std']:.3f}")
    if not math.isnan(stats["std_error"]):
        z = (stats["mean"] - stats["exact"]) / stats["std_error"]
        st.caption(
            f"Standard error of the mean {stats['std_error']:.4f}: the mean is {abs(z):.1f} standard errors from "
            f"the exact value (unbiased), while one return alone is off by {stats['std']:.2f} on average."
        )

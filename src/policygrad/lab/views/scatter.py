"""Gradient scatter: single-sample estimates of ∇J as points; their average and the exact gradient as arrows."""

from __future__ import annotations

import numpy as np
import streamlit as st

from policygrad.lab import charts, ui
from policygrad.lab.scatter import ScatterLab

lab = ui.model("lab.scatter", ScatterLab)
means = ", ".join(f"{m:g}" for m in lab.mdp.R[0].tolist())

ui.intro(
    "Gradient scatter",
    f"A two-armed softmax bandit (expected rewards {means}, plus noise) at θ = (0, 0). One pull gives one "
    "REINFORCE estimate ĝ = R ∇log π(a) of the gradient ∇J — a point in the θ₁–θ₂ plane. **Sample** and compare "
    "the running average of the points with the exact gradient that policygrad computes by linear algebra.",
)

ui.sample_controls(lab, "scatter", "Sample 1", ("Sample 10", "ten", 10))


def vector(v: np.ndarray | None) -> str:
    """(+0.71, -0.71), or a dash before the first sample."""
    return "–" if v is None else f"({v[0]:+.2f}, {v[1]:+.2f})"


stats = lab.statistics()
left, right = st.columns([3, 2], gap="large")
with left:
    st.altair_chart(charts.gradient_scatter(lab.samples, lab.mean, lab.exact), width="content")
with right:
    st.subheader("Statistics", anchor=False)

    top = st.columns(2)
    top[0].metric("samples", f"{stats['samples']:,}")
    top[1].metric("angle to ∇J", "–" if stats["angle_degrees"] is None else f"{stats['angle_degrees']:.1f}°")
    middle = st.columns(2)
    middle[0].metric("average direction", vector(stats["direction"]))
    middle[1].metric("true direction", vector(stats["true_direction"]))
    bottom = st.columns(2)
    bottom[0].metric("average ḡ", vector(stats["mean"]))
    bottom[1].metric("exact ∇J", vector(lab.exact))
    wrong = lab.wrong_way_fraction()
    st.markdown(
        "Every single estimate lies on the line ĝ₁ + ĝ₂ = 0 (adding the same number to both logits changes "
        "nothing), so each one points either along ∇J or straight against it"
        + ("." if wrong is None else f": **{wrong:.0%}** of yours point the wrong way.")
        + " Only their average finds the direction; its error shrinks like 1/√n."
    )

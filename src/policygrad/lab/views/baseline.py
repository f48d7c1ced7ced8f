"""Baseline: the same learner with and without b(s); the raw-return example; the measured variances."""

from __future__ import annotations

import numpy as np
import streamlit as st

from policygrad.experiments.baseline import MEANS
from policygrad.lab import charts, ui
from policygrad.lab.baseline import EXAMPLE_RETURNS, LABELS, MAX_PULLS, MAX_SEEDS, example_advantages, simulate

ui.intro(
    "Baseline",
    "When every return is positive, REINFORCE pushes up *every* action it samples — the good ones only a little "
    "more than the bad ones. Subtracting a baseline b (the average return) from G keeps the gradient's "
    "expectation and removes most of its variance: only better-than-average actions are pushed up.",
)

st.subheader("One batch: returns 8, 6 and 3", anchor=False)
example = example_advantages()
names = [f"action {i + 1} (G = {g:g})" for i, g in enumerate(EXAMPLE_RETURNS)]
top = max(EXAMPLE_RETURNS) * 1.15
bottom = min(0.0, float(np.min(example["with_baseline"]))) * 1.6
raw_col, base_col = st.columns(2, gap="large")
raw_col.altair_chart(
    charts.advantage_bars(names, example["raw"], "raw returns: A = G (every bar pushed up)", [bottom, top]),
    width="stretch",
)
base_col.altair_chart(
    charts.advantage_bars(
        names, example["with_baseline"], f"baseline subtracted: A = G − {example['baseline']:.2f}", [bottom, top]
    ),
    width="stretch",
)

st.subheader("Training with and without a baseline", anchor=False)
st.markdown(
    f"A three-armed bandit paying {', '.join(f'{m:g}' for m in MEANS)} (+ N(0, 1) noise); single-pull "
    "REINFORCE, the same learning rate, the baseline learned by regression on the rewards. Curves show the exact "
    "expected reward J(θ) of each seed."
)
controls = st.columns([1, 1, 1, 2])
seeds = controls[0].number_input(f"seeds (1–{MAX_SEEDS})", value=5, step=1, key="baseline_seeds", format="%d")
pulls = controls[1].number_input(f"pulls (1–{MAX_PULLS:,})", value=300, step=50, key="baseline_pulls", format="%d")
controls[2].markdown("<div style='height: 1.75rem'></div>", unsafe_allow_html=True)
run = controls[2].button("Run simulation", key="baseline_run", type="primary", width="stretch")

if run:
    update, clear = ui.progress_bar()
    result = ui.attempt(simulate, seeds, pulls, on_progress=update)
    clear()
    if result is not None:
        st.session_state["lab.baseline"] = result

result = st.session_state.get("lab.baseline")
if result is None:
    st.caption("Click **Run simulation** to train both learners.")
else:
    low = min(float(c.min()) for c in result.curves.values())
    domain = [np.floor(low), max(MEANS) + 0.3]
    columns = st.columns(2, gap="large")
    colors = {"no baseline": charts.COLORS["reinforce"], "with baseline": charts.COLORS["actor-critic"]}
    for column, label in zip(columns, LABELS, strict=True):
        column.markdown(f"**{label}** — {result.seeds} seeds (thin), their mean (thick), the best arm (dotted)")
        column.altair_chart(
            charts.learning_curves(result.curves[label], max(MEANS), colors[label], domain), width="stretch"
        )
    final = result.final()
    for column, label in zip(columns, LABELS, strict=True):
        mean, spread = final[label]
        cells = column.columns(3)
        cells[0].metric("final J(θ), mean ± std", f"{mean:.2f} ± {spread:.2f}")
        cells[1].metric("variance at θ = 0", f"{result.variance_at_start[label]:.2f}")
        cells[2].metric("mean ‖ĝ − ∇J‖² while learning", f"{result.squared_error[label]:.2f}")
    factor = result.variance_at_start["no baseline"] / result.variance_at_start["with baseline"]
    during = result.squared_error["no baseline"] / result.squared_error["with baseline"]
    st.success(
        f"The baseline divides the variance of one gradient estimate by **{factor:.1f}** at θ = 0 "
        f"(trace of its covariance, measured on samples) and the squared error of the steps actually taken "
        f"by **{during:.1f}** while learning.",
        icon=":material/insights:",
    )

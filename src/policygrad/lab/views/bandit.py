"""Bandit: click an arm, see θ ← θ + α ∇log π(a)·R move the probabilities."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from policygrad.lab import charts, ui
from policygrad.lab.bandit import ARMS, DEFAULT_LEARNING_RATE, MAX_SAMPLE_STEPS, BanditLab

lab = ui.model("lab.bandit", BanditLab)

ui.intro(
    "Bandit",
    "Four arms A–D, each chosen with probability π(a) = softmax(θ)ₐ. Their expected rewards are hidden; "
    "every pull pays that mean plus N(0, 1) noise. **Pull an arm**: policygrad takes one policy-gradient "
    "step θ ← θ + α ∇log π(a)·R, so a positive reward raises π(a) and a negative one lowers it.",
)

left, right = st.columns([3, 2], gap="large")
with right:
    st.subheader("Controls", anchor=False)
    rate = st.number_input("learning rate α", value=DEFAULT_LEARNING_RATE, step=0.05, format="%.3f", key="bandit_lr")
    rate_ok = ui.attempt(lab.set_learning_rate, rate) is not None
    steps = st.number_input(
        f"policy pulls N (1–{MAX_SAMPLE_STEPS:,})", value=100, step=50, key="bandit_steps", format="%d"
    )
    sample_clicked = st.button(
        "Let the policy sample N pulls", key="bandit_sample", disabled=not rate_ok, width="stretch"
    )
    reset_clicked = st.button("Reset", key="bandit_reset", icon=":material/restart_alt:", width="stretch")
    reveal = st.toggle("Reveal the hidden means", key="bandit_reveal")
    feedback = st.container()

with left:
    chart_area = st.container()
    buttons = st.columns(len(ARMS))
    clicked = [
        col.button(f"Pull {name}", key=f"pull_{name}", disabled=not rate_ok, width="stretch", type="primary")
        for col, name in zip(buttons, ARMS, strict=True)
    ]

before = lab.probabilities
if reset_clicked:
    lab.reset()
for arm, was_clicked in enumerate(clicked):
    if was_clicked:
        pull = lab.pull(arm)
        change = pull.probs_after[arm] - before[arm]
        verb = "raised" if change > 0 else "lowered"
        feedback.info(
            f"You pulled **{ARMS[arm]}**: reward **{pull.reward:+.2f}** → π({ARMS[arm]}) {verb} "
            f"from {100 * before[arm]:.1f} % to {100 * pull.probs_after[arm]:.1f} %."
        )
if sample_clicked:
    update, clear = ui.progress_bar(feedback)
    pulls = ui.attempt(
        lab.sample, steps, where=feedback, on_progress=lambda i, n: update(i / n, f"pull {i:,} of {n:,}")
    )
    clear()
    if pulls:
        counts = np.bincount([p.arm for p in pulls], minlength=len(ARMS))
        mean_reward = float(np.mean([p.reward for p in pulls]))
        feedback.info(
            f"The policy pulled {len(pulls):,} times ("
            + ", ".join(f"{name}: {c}" for name, c in zip(ARMS, counts, strict=True))
            + f"); mean reward {mean_reward:+.2f}."
        )

with chart_area:
    st.altair_chart(charts.probability_bars(ARMS, lab.probabilities), width="stretch")

with right:
    if reveal:
        st.markdown(
            "**Hidden means:** "
            + ", ".join(f"{name} = {mean:+.1f}" for name, mean in zip(ARMS, lab.means, strict=True))
            + f"  \nExpected reward of π now: J(θ) = **{lab.expected_reward:+.3f}** (best: {max(lab.means):+.1f})"
        )

st.subheader(f"Reward history ({len(lab.history):,} pulls)", anchor=False)
if lab.history:
    history_left, history_right = st.columns([3, 2], gap="large")
    probs = np.vstack([lab.mdp.policy(lab.mdp.zeros())[0], [p.probs_after for p in lab.history]])
    history_left.altair_chart(charts.probability_history(ARMS, probs), width="stretch")
    recent = pd.DataFrame(
        [
            {
                "pull": p.step,
                "arm": ARMS[p.arm],
                "chosen by": p.chosen_by,
                "reward": p.reward,
                "π(arm) after": p.probs_after[p.arm],
            }
            for p in reversed(lab.history[-200:])
        ]
    )
    history_right.dataframe(
        recent,
        hide_index=True,
        height=240,
        column_config={
            "reward": st.column_config.NumberColumn(format="%+.2f"),
            "π(arm) after": st.column_config.NumberColumn(format="percent"),
        },
        width="stretch",
    )
    average = lab.average_rewards()
    st.caption(
        "Pulls per arm: "
        + ", ".join(f"{name} {n}" for name, n in zip(ARMS, lab.counts(), strict=True))
        + " · mean reward seen: "
        + ", ".join(f"{name} {'–' if a is None else f'{a:+.2f}'}" for name, a in zip(ARMS, average, strict=True))
    )
else:
    st.caption("No pulls yet: click an arm, or let the policy sample.")

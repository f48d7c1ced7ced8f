"""Evolution: the chain REINFORCE → PPO; each step's idea, equation and module source, trained live on CartPole-v1."""

from __future__ import annotations

from typing import Any

import streamlit as st

from policygrad.lab import charts, training, ui
from policygrad.lab.evolution import CHAIN, EDGE_LABELS, NOTES, TITLES, step

SELECTED = "evolution_algo"  # the segmented control's key: the one source of truth for the selected node
st.session_state.setdefault(SELECTED, CHAIN[0])


def _select_from_graph() -> None:
    """A click on a box of the graph selects that algorithm."""
    event: Any = st.session_state.get("evolution_graph")
    try:
        picked = event["selection"]["node"]
        name = picked[0]["name"] if picked else None
    except (KeyError, IndexError, TypeError):
        name = None
    if name in CHAIN:
        st.session_state[SELECTED] = name


ui.intro(
    "Evolution",
    "Five algorithms, one chain: each adds one idea to the one before. **Click a step** to see what it adds, its "
    "equation and the source of its module in the installed policygrad — then train it live on CartPole-v1.",
)

st.segmented_control(
    "step of the chain",
    CHAIN,
    format_func=lambda name: TITLES[name],
    key=SELECTED,
    label_visibility="collapsed",
    required=True,
)
selected = st.session_state[SELECTED]
graph_col, detail_col = st.columns([2, 3], gap="large")
with graph_col:
    st.altair_chart(
        charts.chain_graph(CHAIN, TITLES, EDGE_LABELS, NOTES, selected),
        width="stretch",
        key="evolution_graph",
        on_select=_select_from_graph,
        selection_mode="node",
    )

node = step(selected)
job: training.LiveTraining | None = st.session_state.get("lab.training")
running = job is not None and job.running
if not running:
    training.prestart()  # a worker with torch already imported, so Train starts at once


def _live() -> None:
    """The training panel: progress, the curve so far, Stop. Re-run every second while training runs."""
    job = st.session_state.get("lab.training")
    if job is None:
        st.caption("Press **Train** to train this step on CartPole-v1; the curve updates while it runs.")
        return
    state = job.poll()
    if not job.running and st.session_state.get("evolution_was_running"):
        st.session_state["evolution_was_running"] = False
        st.rerun()  # training ended: draw the whole page again, without polling
    st.session_state["evolution_was_running"] = job.running
    title = TITLES[job.algo]
    if job.running:
        if st.button("Stop training", key="evolution_stop", icon=":material/stop:", width="content"):
            job.stop()
        text = (
            "starting the training process…"
            if state["status"] == "starting"
            else (f"{title}: {state['env_step']:,} of {job.total_steps:,} steps, {state['seconds']:.0f} s")
        )
        st.progress(state["progress"], text=text)
    elif state["status"] == "failed":
        st.error(f"{title}: training failed — {state['error']}", icon=":material/error:")
    else:
        last = state["rows"][-1]["episodic_return_mean"] if state["rows"] else float("nan")
        st.success(
            f"{title} {state['status']} after {state['env_step']:,} steps in {state['seconds']:.0f} s; "
            f"last mean return {last:.1f}.",
            icon=":material/check_circle:",
        )
    st.altair_chart(charts.training_curve(state["rows"], charts.COLORS[job.algo], job.total_steps), width="stretch")


with detail_col:
    st.header(node.title, anchor=False)
    if node.note:
        st.markdown(f"**★ {node.note}** — RLHF fine-tunes language models with this same clipped objective.")
    st.markdown(f"**Adds:** {node.adds}")
    st.latex(node.equation)
    controls = st.columns([1, 1, 2])
    steps = controls[0].number_input(
        f"steps (1,000–{training.MAX_STEPS:,})",
        value=training.DEFAULT_STEPS,
        step=10_000,
        key="evolution_steps",
        format="%d",
    )
    controls[1].markdown("<div style='height: 1.75rem'></div>", unsafe_allow_html=True)
    if controls[1].button(
        f"Train {node.title}",
        key="evolution_train",
        type="primary",
        disabled=running,
        icon=":material/play_arrow:",
        width="stretch",
    ):
        started = ui.attempt(training.LiveTraining, selected, steps)
        if started is not None:
            st.session_state["lab.training"] = started
            st.rerun()  # draw the page again as it is while training runs: Train disabled, the curve polling
    if running:
        st.fragment(_live, run_every=1.0)()
    else:
        _live()

st.subheader(f"Source: {node.module}", anchor=False)
st.caption(node.path)
st.code(node.source, language="python", line_numbers=True, height=420)

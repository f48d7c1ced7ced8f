"""The lab's charts as Altair specifications: numbers in, a chart out, nothing computed here but layout.

The browser draws them (Vega-Lite); every number they show comes from the page models.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import altair as alt
import numpy as np
import pandas as pd

from policygrad.palette import CHAIN_COLORS

#: One colour per step of the chain (as in the experiments' figures), and for good/bad.
COLORS = CHAIN_COLORS
UP, DOWN, NEUTRAL, EXACT = "#2ca02c", "#d62728", "#1f77b4", "black"
ARM_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd"]


def probability_bars(names: Sequence[str], probs: Sequence[float], height: int = 260) -> alt.LayerChart:
    """π(a) per action as bars with "25.0 %" labels, y from 0 to 1."""
    data = pd.DataFrame({"action": list(names), "probability": [float(p) for p in probs]})
    data["label"] = [f"{100 * p:.1f} %" for p in data["probability"]]
    base = alt.Chart(data).encode(
        x=alt.X("action:N", sort=list(names), axis=alt.Axis(labelAngle=0, title=None, labelFontSize=16)),
        y=alt.Y("probability:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%", title="π(a)")),
    )
    bars = base.mark_bar(cornerRadiusTopLeft=4, cornerRadiusTopRight=4).encode(
        color=alt.Color("action:N", scale=alt.Scale(domain=list(names), range=ARM_COLORS), legend=None)
    )
    text = base.mark_text(dy=-10, fontSize=15, fontWeight="bold").encode(text="label:N")
    return (bars + text).properties(height=height)


def probability_history(names: Sequence[str], probs: np.ndarray, height: int = 220) -> alt.Chart:
    """π(a) after each pull: ``probs`` (pulls + 1, k), row 0 the start."""
    steps = np.arange(probs.shape[0])
    data = pd.DataFrame(
        [
            {"pull": int(s), "action": names[a], "probability": float(probs[s, a])}
            for s in steps
            for a in range(len(names))
        ]
    )
    return (
        alt.Chart(data)
        .mark_line(interpolate="step-after" if len(steps) < 40 else "linear")
        .encode(
            x=alt.X("pull:Q", title="pull", axis=alt.Axis(tickMinStep=1)),
            y=alt.Y("probability:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%", title="π(a)")),
            color=alt.Color(
                "action:N", scale=alt.Scale(domain=list(names), range=ARM_COLORS), legend=alt.Legend(orient="top")
            ),
        )
        .properties(height=height)
    )


def returns_histogram(
    returns: Sequence[float], exact: float, mean: float | None, domain: Sequence[float], height: int = 300
) -> alt.LayerChart:
    """A histogram of sampled returns on a fixed ``domain`` (bins of 0.05), the exact expected return (black)
    and the sample mean (red dashed)."""
    edges = np.arange(domain[0], domain[1] + 1e-9, 0.05)
    counts, edges = np.histogram(np.clip(np.asarray(returns, dtype=np.float64), edges[0], edges[-1]), bins=edges)
    bins = pd.DataFrame({"start": edges[:-1], "end": edges[1:], "episodes": counts, "zero": 0})
    bars = (
        alt.Chart(bins)
        .mark_rect(color=NEUTRAL, opacity=0.8, stroke="white", strokeWidth=0.5)
        .encode(
            x=alt.X("start:Q", title="sampled return G₀", scale=alt.Scale(domain=[edges[0], edges[-1]])),
            x2="end:Q",
            y=alt.Y(
                "episodes:Q",
                title="episodes",
                scale=alt.Scale(domain=[0, max(5, int(counts.max()))]),
                axis=alt.Axis(tickMinStep=1, format="d"),
            ),
            y2="zero:Q",
            tooltip=["start:Q", "end:Q", "episodes:Q"],
        )
    )
    marks = [{"what": f"exact V(s₀) = {exact:.3f}", "x": exact}]
    if mean is not None and not math.isnan(mean):
        marks.append({"what": f"sample mean = {mean:.3f}", "x": mean})
    rules = (
        alt.Chart(pd.DataFrame(marks))
        .mark_rule(strokeWidth=3)
        .encode(
            x="x:Q",
            color=alt.Color(
                "what:N",
                scale=alt.Scale(domain=[m["what"] for m in marks], range=[EXACT, DOWN][: len(marks)]),
                legend=alt.Legend(orient="top", title=None, labelLimit=300),
            ),
            strokeDash=alt.StrokeDash("what:N", legend=None, scale=alt.Scale(range=[[1, 0], [6, 3]])),
        )
    )
    return (bars + rules).properties(height=height)


def _arrows(vectors: dict[str, np.ndarray | None], colors: dict[str, str]) -> list[alt.Chart]:
    """Arrows from the origin: a line per vector and a triangle at its tip, turned to point along it."""
    lines, heads = [], []
    for name, v in vectors.items():
        if v is None:
            continue
        lines += [
            {"name": name, "x": 0.0, "y": 0.0, "order": 0},
            {"name": name, "x": float(v[0]), "y": float(v[1]), "order": 1},
        ]
        heads.append(
            {"name": name, "x": float(v[0]), "y": float(v[1]), "angle": 90 - math.degrees(math.atan2(v[1], v[0]))}
        )
    if not lines:
        return []
    scale = alt.Scale(domain=list(colors), range=list(colors.values()))
    color = alt.Color("name:N", scale=scale, legend=alt.Legend(orient="top", title=None, labelLimit=320))
    widths = alt.Scale(domain=list(colors), range=[6, 3][: len(colors)])  # the first stays visible under the second
    line = (
        alt.Chart(pd.DataFrame(lines))
        .mark_line()
        .encode(
            x="x:Q",
            y="y:Q",
            order="order:Q",
            color=color,
            strokeWidth=alt.StrokeWidth("name:N", scale=widths, legend=None),
        )
    )
    sizes = alt.Scale(domain=list(colors), range=[420, 200][: len(colors)])
    head = (
        alt.Chart(pd.DataFrame(heads))
        .mark_point(shape="triangle-up", filled=True, opacity=1)
        .encode(
            x="x:Q",
            y="y:Q",
            angle=alt.Angle("angle:Q", scale=None),
            color=alt.Color("name:N", scale=scale, legend=None),
            size=alt.Size("name:N", scale=sizes, legend=None),
        )
    )
    return [line, head]


def gradient_scatter(
    samples: np.ndarray, mean: np.ndarray | None, exact: np.ndarray, size: int = 430
) -> alt.LayerChart:
    """Single-sample estimates (points) in the θ1–θ2 plane, the running average and the exact ∇J (arrows)."""
    reach = max(1.0, float(np.abs(samples).max()) if len(samples) else 0.0, float(np.abs(exact).max())) * 1.1
    domain = [-reach, reach]
    x = alt.X("x:Q", title="∂/∂θ₁", scale=alt.Scale(domain=domain))
    y = alt.Y("y:Q", title="∂/∂θ₂", scale=alt.Scale(domain=domain))
    axes = alt.Chart(pd.DataFrame({"zero": [0.0]}))
    layers: list[alt.Chart] = [
        axes.mark_rule(color="#bbb").encode(x="zero:Q"),
        axes.mark_rule(color="#bbb").encode(y="zero:Q"),
    ]
    points = pd.DataFrame({"x": samples[:, 0], "y": samples[:, 1], "sample": np.arange(1, len(samples) + 1)})
    layers.append(
        alt.Chart(points)
        .mark_circle(size=70, opacity=0.45, color=NEUTRAL)
        .encode(x=x, y=y, tooltip=["sample:Q", alt.Tooltip("x:Q", format=".3f"), alt.Tooltip("y:Q", format=".3f")])
    )
    colors = {"exact ∇J": EXACT, "running average ḡ": DOWN}
    layers += _arrows({"exact ∇J": exact, "running average ḡ": mean}, colors)
    return alt.layer(*layers).properties(width=size, height=size)


def learning_curves(curves: np.ndarray, best: float, color: str, y_domain: Sequence[float]) -> alt.LayerChart:
    """One thin line per seed of J(θ) (seeds, pulls + 1), their mean thick, the best possible dotted."""
    seeds, length = curves.shape
    step = max(1, length // 300)  # at most ~300 points per line keeps the page light
    pulls = np.arange(0, length, step)
    rows = [{"pull": int(p), "seed": f"seed {s}", "J": float(curves[s, p])} for s in range(seeds) for p in pulls]
    data = pd.DataFrame(rows)
    x = alt.X("pull:Q", title="pull")
    y = alt.Y("J:Q", title="J(θ)", scale=alt.Scale(domain=list(y_domain)))
    thin = alt.Chart(data).mark_line(opacity=0.35, strokeWidth=1, color=color).encode(x=x, y=y, detail="seed:N")
    mean = pd.DataFrame({"pull": pulls, "J": curves[:, pulls].mean(0)})
    thick = alt.Chart(mean).mark_line(strokeWidth=3, color=color).encode(x=x, y=y)
    top = alt.Chart(pd.DataFrame({"J": [best]})).mark_rule(strokeDash=[4, 4], color="gray").encode(y="J:Q")
    return (thin + thick + top).properties(height=280)


def advantage_bars(
    names: Sequence[str], weights: Sequence[float], title: str, domain: Sequence[float]
) -> alt.LayerChart:
    """The weight on ∇log π(a) of each sampled action: green pushes its probability up, red down."""
    data = pd.DataFrame({"action": list(names), "weight": [float(w) for w in weights]})
    data["direction"] = np.where(data["weight"] > 0, "pushed up", "pushed down")
    data["label"] = [f"{w:+.2f}" for w in data["weight"]]
    base = alt.Chart(data).encode(
        x=alt.X("action:N", sort=list(names), axis=alt.Axis(labelAngle=0, title=None, labelFontSize=12)),
        y=alt.Y("weight:Q", title="weight A on ∇log π(a)", scale=alt.Scale(domain=list(domain))),
    )
    bars = base.mark_bar().encode(
        color=alt.Color(
            "direction:N",
            scale=alt.Scale(domain=["pushed up", "pushed down"], range=[UP, DOWN]),
            legend=alt.Legend(orient="top", title=None),
        )
    )
    above = base.transform_filter("datum.weight >= 0").mark_text(dy=-9, fontWeight="bold").encode(text="label:N")
    below = base.transform_filter("datum.weight < 0").mark_text(dy=10, fontWeight="bold").encode(text="label:N")
    zero = alt.Chart(pd.DataFrame({"y": [0.0]})).mark_rule(color="gray").encode(y="y:Q")
    return (bars + above + below + zero).properties(title=title, height=300)


def chain_graph(
    names: Sequence[str],
    titles: dict[str, str],
    edge_labels: dict[str, str],
    notes: dict[str, str],
    selected: str | None,
) -> alt.LayerChart:
    """The chain top to bottom: a box per algorithm (clickable: selection "node"), labelled arrows between."""
    gap = 2.6
    nodes = pd.DataFrame(
        {
            "name": list(names),
            "title": [titles[n] for n in names],
            "y": [i * gap for i in range(len(names))],
            "selected": [n == selected for n in names],
            "color": [COLORS.get(n, NEUTRAL) for n in names],
        }
    )
    nodes["y0"], nodes["y1"] = nodes["y"] - 0.75, nodes["y"] + 0.75
    nodes["x0"], nodes["x1"] = 0.0, 4.0
    nodes["x"] = 2.0
    pick = alt.selection_point(name="node", fields=["name"], on="click", clear=False)
    y_scale = alt.Scale(domain=[-1.0, (len(names) - 1) * gap + 1.0], reverse=True)
    x_scale = alt.Scale(domain=[0.0, 10.0])

    def x(field: str) -> alt.X:
        return alt.X(f"{field}:Q", scale=x_scale, axis=None)

    def y(field: str) -> alt.Y:
        return alt.Y(f"{field}:Q", scale=y_scale, axis=None)

    boxes = (
        alt.Chart(nodes)
        .mark_rect(cornerRadius=8, stroke="#333", cursor="pointer")
        .encode(
            x=x("x0"),
            x2="x1:Q",
            y=y("y0"),
            y2="y1:Q",
            color=alt.Color("color:N", scale=None),
            opacity=alt.condition("datum.selected", alt.value(1.0), alt.value(0.35)),
            strokeWidth=alt.condition("datum.selected", alt.value(3), alt.value(1)),
            tooltip=[alt.Tooltip("title:N", title="click to open")],
        )
        .add_params(pick)
    )
    labels = (
        alt.Chart(nodes)
        .mark_text(fontSize=15, fontWeight="bold", cursor="pointer")
        .encode(
            x=x("x"),
            y=y("y"),
            text="title:N",
            color=alt.condition("datum.selected", alt.value("white"), alt.value("#222")),
        )
    )
    arrows = pd.DataFrame(
        [
            {"y0": (i - 1) * gap + 0.8, "y1": i * gap - 0.85, "x": 2.0, "label": edge_labels[n], "ym": (i - 0.5) * gap}
            for i, n in enumerate(names)
            if i > 0
        ]
    )
    shafts = alt.Chart(arrows).mark_rule(strokeWidth=2, color="#555").encode(x=x("x"), y=y("y0"), y2="y1:Q")
    heads = (
        alt.Chart(arrows)
        .mark_point(shape="triangle-down", filled=True, size=120, color="#555", opacity=1)
        .encode(x=x("x"), y=y("y1"))
    )
    edge_text = (
        alt.Chart(arrows)
        .mark_text(align="left", dx=12, fontSize=13, color="#444")
        .encode(x=x("x"), y=y("ym"), text="label:N")
    )
    note_rows = pd.DataFrame(
        [{"y": names.index(n) * gap, "note": f"★ {text}"} for n, text in notes.items() if n in names]
    )
    note_text = (
        alt.Chart(note_rows)
        .mark_text(align="left", fontSize=13, fontWeight="bold", color=COLORS["ppo"])
        .encode(x=x("x"), y=y("y"), text="note:N")
        .transform_calculate(x="4.3")
    )
    return (
        alt.layer(shafts, heads, edge_text, boxes, labels, note_text).properties(height=470).configure_view(stroke=None)
    )


#: A live curve draws at most this many points: the browser redraws it every second, and a long
#: run reports tens of thousands of updates.
MAX_CURVE_POINTS = 600


def training_curve(rows: Sequence[dict[str, float]], color: str, total_steps: int, height: int = 300) -> alt.Chart:
    """Mean return of recent episodes against environment steps, as the rows arrive (thinned evenly, last kept)."""
    points = [
        {"env_step": r["env_step"], "return": r["episodic_return_mean"]}
        for r in rows
        if r.get("episodic_return_mean") is not None and not math.isnan(r["episodic_return_mean"])
    ]
    if len(points) > MAX_CURVE_POINTS:
        stride = math.ceil(len(points) / (MAX_CURVE_POINTS - 1))
        points = points[-1::-stride][::-1]  # counted back from the newest, so the last row is always drawn
    data = pd.DataFrame(points or [{"env_step": 0, "return": float("nan")}])
    return (
        alt.Chart(data)
        .mark_line(color=color, strokeWidth=2, point=len(data) < 30)
        .encode(
            x=alt.X("env_step:Q", title="environment steps", scale=alt.Scale(domain=[0, total_steps])),
            y=alt.Y("return:Q", title="mean episode return", scale=alt.Scale(domain=[0, 520])),
            tooltip=[alt.Tooltip("env_step:Q", format=","), alt.Tooltip("return:Q", format=".1f")],
        )
        .properties(height=height)
    )

"""Draws docs/architecture.png, the layers of policygrad: python docs/architecture_figure.py

Each band is a layer; a module may import only from the bands below it. algorithms/ and
kernels/ share a band: neither imports the other, the trainer joins them
(tests/test_architecture.py checks the same layering on the code).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

# Bottom to top: (layer, modules, what it holds).
LAYERS = [
    ("foundations", "errors · config · seeding · runtime · optim", "validated configs, named random streams, Adam"),
    ("environments", "envs · batched_envs", "vector envs, their state, the CartPole replica"),
    ("policy", "nets · agent", "encoders and heads → torch distributions"),
    ("data & estimators", "rollout · advantages · losses", "(N, T) rollouts, GAE, the loss terms"),
    ("learner contract", "learners", "Batch, LossTerms → StepMetrics; the autograd reference"),
    (
        ("algorithms/", "reinforce · baseline · a2c · …", "advantages(rollout, cfg) + the update"),
        ("kernels/", "fused_mlp · small_batch · select()", "fast learners = autograd's steps"),
    ),
    ("runs & collection", "runs · run_log · checkpoint · collectors · evaluation · diagnostics", "the run folder"),
    ("trainer", "trainer", "collect → estimate → update → log → checkpoint; asks select() once"),
    ("entry points", "policygrad API · cli · lab/ · experiments/ · lm/ · distributed/ (Ray only)", "users"),
]
COLORS = [
    "#e8eef7",
    "#dfe9f3",
    "#d6e4f0",
    "#cddfec",
    "#f6e3c5",
    ("#d9ecd0", "#f3d1a2"),
    "#e4e0f1",
    "#dcd6ee",
    "#eeeeee",
]


def draw(path: Path) -> None:
    fig, ax = plt.subplots(figsize=(10, 6.4))
    height, gap = 0.56, 0.08
    for i, (layer, color) in enumerate(zip(LAYERS, COLORS, strict=True)):
        y = i * (height + gap)
        boxes = (
            [(layer, color, 0.0, 10.0)]
            if isinstance(layer[0], str)
            else [
                (layer[0], color[0], 0.0, 4.95),
                (layer[1], color[1], 5.05, 4.95),
            ]
        )
        for (name, modules, holds), fill, x, width in boxes:
            indent = 2.35 if width > 5 else 1.45
            ax.add_patch(FancyBboxPatch((x, y), width, height, boxstyle="round,pad=0.02", fc=fill, ec="#667"))
            ax.text(x + 0.15, y + height / 2, name, va="center", ha="left", fontsize=10, fontweight="bold")
            ax.text(x + indent, y + height * 0.66, modules, va="center", ha="left", fontsize=8.6, family="monospace")
            ax.text(x + indent, y + height * 0.26, holds, va="center", ha="left", fontsize=8, color="#444")
    top = len(LAYERS) * (height + gap)
    ax.annotate("", xy=(9.75, 0.1), xytext=(9.75, top - 0.3), arrowprops=dict(arrowstyle="->", color="#a33", lw=1.5))
    ax.text(9.6, top / 2, "imports point down only", rotation=90, va="center", ha="right", fontsize=8, color="#a33")
    ax.set_xlim(-0.1, 10.1)
    ax.set_ylim(-0.1, top)
    ax.axis("off")
    ax.set_title("policygrad: the layers, and where the learner contract sits", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    draw(Path(__file__).with_name("architecture.png"))

"""Large actions: a contextual bandit with 32,768 actions (a language model's vocabulary) learned by sampling.

Each context c has features x_c; each action a an embedding e_a (fixed, like a language
model's token embeddings); the hidden reward is r(c, a) = u_c · e_a. The policy is a
softmax over all 32,768 logits (x_c W) · e_a, W learned. Each update samples K actions
for each of a few contexts, scores them with the leave-one-out mean of their group as
baseline (RLOO, as for language models), and takes one step on ``policy_gradient_loss``.
The exact expected reward (a sum over every action) is tracked, and each part of an
update is timed.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch.distributions import Categorical

from policygrad.experiments.common import Report, figure
from policygrad.losses import policy_gradient_loss

SUMMARY = "contextual bandit with 32,768 actions: a softmax policy learns it by sampling; cost per update"
NUM_ACTIONS = 32_768
NUM_CONTEXTS = 64
FEATURES = 32
EMBEDDING = 16
CONTEXTS_PER_UPDATE = 8
SAMPLES_PER_CONTEXT = 4  # K actions per context: the group of the leave-one-out baseline
LEARNING_RATE = 0.02


def make_task(generator: torch.Generator, num_actions: int = NUM_ACTIONS) -> dict[str, torch.Tensor]:
    """Context features (C, d), action embeddings (V, k) and the reward table r = u_c · e_a (C, V)."""
    features = torch.randn(NUM_CONTEXTS, FEATURES, generator=generator)
    embeddings = torch.randn(num_actions, EMBEDDING, generator=generator) / 4
    hidden = torch.randn(FEATURES, EMBEDDING, generator=generator)
    targets = features @ hidden
    targets = targets / targets.norm(dim=1, keepdim=True)
    return {"features": features, "embeddings": embeddings, "rewards": targets @ embeddings.T}


def leave_one_out_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """r_i − mean of the other K − 1 rewards of the same group; rewards: (groups, K)."""
    k = rewards.shape[1]
    return rewards - (rewards.sum(1, keepdim=True) - rewards) / (k - 1)


def update_step(
    task: dict[str, torch.Tensor], weights: torch.Tensor, optimizer: torch.optim.Optimizer, generator: torch.Generator
) -> tuple[float, float]:
    """One RLOO policy-gradient step; returns the seconds spent sampling and on the gradient step."""
    features, embeddings, rewards = task["features"], task["embeddings"], task["rewards"]
    num_actions, batch = embeddings.shape[0], CONTEXTS_PER_UPDATE * SAMPLES_PER_CONTEXT
    start = time.perf_counter()
    contexts = torch.randint(0, features.shape[0], (CONTEXTS_PER_UPDATE,), generator=generator)
    contexts = contexts.repeat_interleave(SAMPLES_PER_CONTEXT)
    logits = features[contexts] @ weights @ embeddings.T  # (batch, num_actions)
    with torch.no_grad():  # inverse-CDF sampling, as the library's rollout samples a Categorical
        cdf = torch.softmax(logits, -1).cumsum(-1)
        actions = (cdf <= torch.rand(batch, 1, generator=generator)).sum(-1).clamp_(max=num_actions - 1)
    middle = time.perf_counter()
    sampled = rewards[contexts, actions].reshape(CONTEXTS_PER_UPDATE, SAMPLES_PER_CONTEXT)
    advantages = leave_one_out_advantages(sampled).reshape(-1)
    log_probs = Categorical(logits=logits, validate_args=False).log_prob(actions)
    loss, _ = policy_gradient_loss(log_probs, advantages, torch.ones(batch, dtype=torch.bool))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return middle - start, time.perf_counter() - middle


def cost_by_number_of_actions(generator: torch.Generator, repeats: int, sizes: tuple[int, ...]) -> dict[int, float]:
    """Median milliseconds per update for smaller and larger action sets (the same task shape)."""
    out = {}
    for num_actions in sizes:
        task = make_task(generator, num_actions)
        weights = torch.zeros(FEATURES, EMBEDDING, requires_grad=True)
        optimizer = torch.optim.Adam([weights], lr=LEARNING_RATE)
        seconds = [sum(update_step(task, weights, optimizer, generator)) for _ in range(repeats)]
        out[num_actions] = 1000 * float(np.median(seconds))
    return out


def run(seed: int, quick: bool = False, **_: Any) -> Report:
    updates, every = (20, 5) if quick else (300, 10)
    generator = torch.Generator().manual_seed(seed)
    task = make_task(generator)
    features, embeddings, rewards = task["features"], task["embeddings"], task["rewards"]
    weights = torch.zeros(FEATURES, EMBEDDING, requires_grad=True)
    optimizer = torch.optim.Adam([weights], lr=LEARNING_RATE)
    best = rewards.max(1).values.mean().item()

    def evaluate() -> tuple[float, float, float]:
        """Exact expected reward, entropy and P(best action), averaged over all contexts."""
        with torch.no_grad():
            probs = torch.softmax(features @ weights @ embeddings.T, -1)
            expected = (probs * rewards).sum(-1).mean().item()
            entropy = -(probs * probs.clamp_min(1e-30).log()).sum(-1).mean().item()
            p_best = probs.gather(1, rewards.argmax(1, keepdim=True)).mean().item()
        return expected, entropy, p_best

    curve = [(0, *evaluate())]
    times: dict[str, list[float]] = {"sample": [], "update": []}
    batch = CONTEXTS_PER_UPDATE * SAMPLES_PER_CONTEXT
    for k in range(1, updates + 1):
        sample_seconds, update_seconds = update_step(task, weights, optimizer, generator)
        times["sample"].append(sample_seconds)
        times["update"].append(update_seconds)
        if k % every == 0:
            curve.append((k, *evaluate()))
    sizes = (1_024, 4_096) if quick else (1_024, 4_096, 16_384, NUM_ACTIONS, 4 * NUM_ACTIONS)
    scaling = cost_by_number_of_actions(generator, repeats=1 if quick else 10, sizes=sizes)
    curve_arr = np.array(curve)
    per_update_ms = 1000 * (np.array(times["sample"]) + np.array(times["update"]))

    fig, axes = figure(1, 3, width=4.6)
    ax = axes[0, 0]
    ax.plot(curve_arr[:, 0], curve_arr[:, 1], color="C0", label="exact expected reward")
    ax.axhline(best, color="black", ls=":", label=f"best action per context ({best:.3f})")
    ax.axhline(rewards.mean().item(), color="gray", ls="--", lw=1, label="uniform policy")
    ax.set(title=f"{NUM_ACTIONS:,} actions: expected reward", xlabel="update", ylabel="E_π[r]")
    ax.legend(fontsize=8)
    ax = axes[0, 1]
    ax.plot(curve_arr[:, 0], curve_arr[:, 2], color="C1")
    ax.axhline(np.log(NUM_ACTIONS), color="gray", ls="--", lw=1, label=f"log {NUM_ACTIONS:,} (uniform)")
    ax.set(title="policy entropy (nats)", xlabel="update")
    ax.legend(fontsize=8)
    ax = axes[0, 2]
    sizes_arr = np.array(list(scaling))
    ax.loglog(sizes_arr, list(scaling.values()), "o-", color="C2", label="median ms per update")
    ax.loglog(sizes_arr, scaling[sizes[-1]] * sizes_arr / sizes[-1], "k:", lw=1, label="∝ number of actions")
    ax.set(title=f"cost per update ({batch} samples)", xlabel="number of actions", ylabel="ms")
    ax.legend(fontsize=8)
    fig.suptitle(f"Contextual bandit with {NUM_ACTIONS:,} actions, learned by sampling (seed {seed})")

    final_expected, final_entropy, final_p_best = curve_arr[-1, 1:]
    numbers = {
        "actions": NUM_ACTIONS,
        "contexts": NUM_CONTEXTS,
        "samples_per_update": batch,
        "samples_per_context": SAMPLES_PER_CONTEXT,
        "updates": updates,
        "learning_rate": LEARNING_RATE,
        "parameters": weights.numel(),
        "best_expected_reward": best,
        "uniform_expected_reward": rewards.mean().item(),
        "final_expected_reward": float(final_expected),
        "final_fraction_of_best": float(final_expected / best),
        "final_entropy_nats": float(final_entropy),
        "final_p_best_action": float(final_p_best),
        "actions_sampled_in_total": updates * batch,
        "curve": {"update": curve_arr[:, 0], "expected_reward": curve_arr[:, 1], "entropy": curve_arr[:, 2]},
    }
    timing = {
        "ms_per_update_median": float(np.median(per_update_ms)),
        "ms_sample_median": float(1000 * np.median(times["sample"])),
        "ms_gradient_step_median": float(1000 * np.median(times["update"])),
        "samples_per_second": float(batch / np.median(per_update_ms) * 1000),
        "torch_threads": torch.get_num_threads(),
        "ms_per_update_by_number_of_actions": scaling,
    }
    costs = ", ".join(f"{v:.1f}" for v in scaling.values())
    markdown = f"""# Large action spaces

A contextual bandit with {NUM_ACTIONS:,} actions — a language model's vocabulary — and
{NUM_CONTEXTS} contexts. The policy is one softmax over all {NUM_ACTIONS:,} logits (x_c W)·e_a with
fixed action embeddings e_a (like token embeddings) and {weights.numel()} learned weights. Each
update samples {SAMPLES_PER_CONTEXT} actions for each of {CONTEXTS_PER_UPDATE} contexts, uses the leave-one-out mean of
each group as baseline, and steps on the library's `policy_gradient_loss` (Adam, lr {LEARNING_RATE}).

After {updates} updates ({updates * batch:,} sampled actions, most actions never tried) the
exact expected reward is {final_expected:.3f}, {final_expected / best:.0%} of the best possible {best:.3f}
(uniform: {rewards.mean().item():.3f}); the entropy fell from {np.log(NUM_ACTIONS):.2f} to {final_entropy:.2f} nats, and
the best action of a context has probability {final_p_best:.2f} on average. Sampling generalises across actions
through their embeddings; a table of {NUM_ACTIONS:,} independent logits per context would need each
action tried.

**Cost** (this machine, one thread): median {timing["ms_per_update_median"]:.1f} ms per update of {batch}
samples — {timing["ms_sample_median"]:.1f} ms for the logits and sampling,
{timing["ms_gradient_step_median"]:.1f} ms for the log-probabilities, loss, backward pass and step.
Measured from {sizes[0]:,} to {sizes[-1]:,} actions ({costs} ms): fixed overheads dominate the small
sizes, and from there on the cost grows at least in proportion to the number of actions — the softmax
over the logits, not the policy-gradient arithmetic, is what costs.
"""
    return Report(fig, numbers, markdown, timing)

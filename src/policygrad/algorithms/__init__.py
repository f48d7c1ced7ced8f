"""The five algorithms of the chain, one short module each, composed from shared pieces.

REINFORCE → + baseline b(s) → Actor-Critic (+ critic, TD) → A2C (+ parallel sampling,
GAE) → PPO (+ clipped trust region). Each module holds its config (extending the
previous step's) and an ``update(agent, optimizer, rollout, cfg, update_index)``.
"""

from __future__ import annotations

from types import ModuleType

from policygrad.algorithms import a2c, actor_critic, baseline, ppo, reinforce
from policygrad.errors import lookup

ALGORITHMS: dict[str, ModuleType] = {
    "reinforce": reinforce,
    "reinforce-baseline": baseline,
    "actor-critic": actor_critic,
    "a2c": a2c,
    "ppo": ppo,
}

#: What each step adds to the previous one (shown by `policygrad list` and the docs).
ADDS: dict[str, str] = {
    "reinforce": "∇log π(a|s) · G_t from complete episodes",
    "reinforce-baseline": "+ baseline b(s) = V(s): A = G_t − V(s_t)",
    "actor-critic": "+ critic bootstrap: A = r + γV(s') − V(s), updates every n steps",
    "a2c": "+ parallel sampling: N envs × T steps, GAE(λ)",
    "ppo": "+ clipped trust region: several epochs of minibatches",
}


def get_algorithm(name: str) -> ModuleType:
    """The algorithm module for a CLI name, or a clear error."""
    return lookup(name, ALGORITHMS, "algorithm")

"""The token algorithms, one short module each: REINFORCE → RLOO → GRPO → PPO.

Each module holds its config (extending the previous step's), ``USES_VALUE_HEAD`` and
``update(model, optimizer, rollout, cfg, update_index)``.
"""

from __future__ import annotations

from types import ModuleType

from policygrad.errors import lookup
from policygrad.lm.algorithms import grpo, ppo, reinforce, rloo

ALGORITHMS: dict[str, ModuleType] = {"reinforce": reinforce, "rloo": rloo, "grpo": grpo, "ppo": ppo}


def get_algorithm(name: str) -> ModuleType:
    """The token algorithm module called ``name``, or a clear error."""
    return lookup(name, ALGORITHMS, "algorithm")


#: What each step adds to the previous one.
ADDS: dict[str, str] = {
    "reinforce": "∇log π(y_t|·) · G_t, KL to the reference folded into the reward",
    "rloo": "+ leave-one-out baseline over K responses per prompt",
    "grpo": "+ group-normalised advantages, clipped ratio, KL (k3) in the loss",
    "ppo": "+ value head as critic, per-token GAE, several epochs of minibatches",
}

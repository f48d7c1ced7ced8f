"""Fast learners under one contract, chosen once per run by :func:`select`.

A kernel computes the learner's step (:class:`policygrad.learners.Learner`: one minibatch's
loss → gradient → optimiser step → metrics) faster than autograd for the agents it can
hold, and is tested equal to :class:`policygrad.learners.AutogradLearner`. It holds no
algorithm logic. The learners, fastest first:

========== ==================================================================================
numpy-mlp  the fused step in numpy for score-function steps of ≤ 64 samples (A2C at SB3's
           layout, Actor-Critic), the torch kernel for anything else
fused-mlp  tanh/ReLU MLP agents, float32 on CPU, trained by Adam: a written-out backward over
           flat parameter, gradient and moment buffers
autograd   everything: the reference, composed from :mod:`policygrad.losses`
========== ==================================================================================

A learner that cannot serve a run is passed over with the reason (``policygrad train``
prints it); ``--set learner=NAME`` asks for one by name, and an impossible request is refused
with the reason.
"""

from __future__ import annotations

from typing import Any

from policygrad.errors import PolicygradError
from policygrad.kernels.eligibility import agent_refusal
from policygrad.kernels.fused_mlp import FusedMLPLearner, FusedSampler
from policygrad.kernels.small_batch import NumpyMLPLearner
from policygrad.learners import AutogradLearner, Learner

#: The fast learners, fastest first; the autograd learner serves whatever none of them does.
FAST_LEARNERS = (NumpyMLPLearner, FusedMLPLearner)
LEARNERS = ("auto", *(cls.name for cls in FAST_LEARNERS), AutogradLearner.name)


def candidates(agent: Any, optimizer: Any, cfg: Any) -> list[tuple[str, str | None]]:
    """Each fast learner's name and why it cannot serve this run (None: it can), fastest first."""
    return [(cls.name, cls.refusal(agent, optimizer, cfg)) for cls in FAST_LEARNERS]


def select(agent: Any, optimizer: Any, cfg: Any) -> Learner:
    """The fastest learner that serves ``agent`` and ``optimizer`` under ``cfg`` (``cfg.learner`` may name one).

    The choice is made once per run, by the trainer. The learners passed over, with why,
    are in the returned learner's ``passed_over`` (``[(name, reason), …]``).
    """
    wanted = getattr(cfg, "learner", "auto")
    if wanted == AutogradLearner.name:
        return _chosen(AutogradLearner(agent, optimizer), [])
    passed_over = []
    for cls in FAST_LEARNERS:
        reason = cls.refusal(agent, optimizer, cfg)
        if wanted == cls.name and reason is not None:
            raise PolicygradError(f"learner={wanted} cannot serve this run: {reason} (try --set learner=auto)")
        if reason is None and wanted in ("auto", cls.name):
            return _chosen(cls(agent, optimizer), passed_over)
        if wanted == "auto":
            passed_over.append((cls.name, reason))
    return _chosen(AutogradLearner(agent, optimizer), passed_over)


def _chosen(learner: Any, passed_over: list[tuple[str, str | None]]) -> Learner:
    learner.passed_over = passed_over
    return learner


def describe(learner: Any) -> str:
    """``learner: fused-mlp``, with the fast learners passed over and why: the first line of a run."""
    passed = [f"{name}: {reason}" for name, reason in getattr(learner, "passed_over", []) if reason]
    return f"learner: {learner.name}" + (f" (passed over {'; '.join(passed)})" if passed else "")


def rollout_sampler(agent: Any, learner: str = "auto") -> FusedSampler | None:
    """The fused policy forward for the rollout, or None (the agent's own ``sample``).

    ``learner`` is the run's ``learner`` setting: None under ``autograd`` — a run of the
    reference uses no kernel at all — and where the layout cannot hold the agent.
    """
    if learner == AutogradLearner.name or agent_refusal(agent) is not None:
        return None
    return FusedSampler(agent)


__all__ = ["LEARNERS", "candidates", "describe", "rollout_sampler", "select"]

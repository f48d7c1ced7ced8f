"""Token rollouts: sampled responses as the same (N, T) :class:`~policygrad.rollout.Rollout`.

A response y₁ … y_T to a prompt x is an episode: the state at step t is (x, y_<t),
the action is y_t, the task reward arrives on the last token (which terminates the
episode: there is nothing to bootstrap), and padding after ``<eos>`` is masked. With
the KL penalty in the reward, each token also pays −β·k1_t, k1_t = log π(y_t|·) −
log π_ref(y_t|·) (Ziegler et al. 2019; Stiennon et al. 2020).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from policygrad.lm.generation import Samples
from policygrad.lm.losses import kl_per_token
from policygrad.lm.tasks import EOS
from policygrad.rollout import Rollout


@dataclass
class TokenRollout(Rollout):
    """A :class:`~policygrad.rollout.Rollout` of responses, plus what token methods need.

    ``observations`` holds the last context token before each action (the full context
    is ``prompts`` followed by ``actions``); ``actions`` are the response tokens.

    =============  ========  ===========================================================
    extra field    shape     meaning
    =============  ========  ===========================================================
    prompts        (N, P)    prompt token ids
    ref_log_probs  (N, T)    log π_ref(y_t | prompt, y_<t) (0 on padding)
    group_ids      (N,)      index of the prompt: the K samples of one prompt share it
    scores         (N,)      the task reward of each response
    =============  ========  ===========================================================
    """

    prompts: torch.Tensor
    ref_log_probs: torch.Tensor
    group_ids: torch.Tensor
    scores: torch.Tensor

    @property
    def responses(self) -> torch.Tensor:
        return self.actions

    @property
    def last_token(self) -> torch.Tensor:
        """(N, T) bool: the final token of each response, where the task reward sits."""
        return self.terminated


def last_token_mask(mask: torch.Tensor) -> torch.Tensor:
    """(N, T) bool, True at the last valid position of each row of ``mask``."""
    lengths = mask.sum(1, keepdim=True)
    return mask & (mask.cumsum(1) == lengths)


def ended_with_eos(responses: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(N,) bool: the response's last valid token is ``<eos>`` (it was not cut at the budget)."""
    return ((responses == EOS) & last_token_mask(mask)).any(1)


def build_rollout(
    samples: Samples,
    scores: torch.Tensor,
    ref_log_probs: torch.Tensor,
    group_ids: torch.Tensor,
    kl_coef: float,
    kl_in_reward: bool,
) -> TokenRollout:
    """Assemble the (N, T) rollout: task reward on the last token, −β·k1 per token if ``kl_in_reward``.

    Values (from a value head, else zeros) and next values are zero on padding; the
    last token is terminal, so GAE never bootstraps past the response.
    """
    mask = samples.mask
    maskf = mask.float()
    last = last_token_mask(mask)
    rewards = last.float() * scores.unsqueeze(1)
    ref_log_probs = ref_log_probs * maskf
    if kl_in_reward and kl_coef > 0:
        rewards = rewards - kl_coef * kl_per_token(samples.log_probs, ref_log_probs, "k1") * maskf
    values = samples.values * maskf if samples.values is not None else torch.zeros_like(rewards)
    next_values = torch.cat([values[:, 1:], torch.zeros_like(values[:, :1])], dim=1) * (~last).float()
    prompt_length = samples.prompts.shape[1]
    sequences = samples.sequences
    return TokenRollout(
        observations=sequences[:, prompt_length - 1 : prompt_length - 1 + mask.shape[1]],
        actions=samples.responses,
        log_probs=samples.log_probs,
        values=values,
        rewards=rewards,
        terminated=last,
        truncated=torch.zeros_like(last),
        mask=mask,
        next_values=next_values,
        prompts=samples.prompts,
        ref_log_probs=ref_log_probs,
        group_ids=group_ids,
        scores=scores,
    )

"""The memory core (``policy=lstm``): an LSTM between the encoder and the heads, reset at episode starts.

A feed-forward policy sees one observation; a recurrent one carries a state ``(h, c)`` from step
to step of an episode, so it can act on what it saw before (a velocity from two positions, a
cue shown once). The core is one step of that recurrence, used three ways:

- the rollout calls :meth:`RecurrentCore.step` once per vector step with the state it carries,
  and records the state at the rollout's first step (``Rollout.initial_state``) and which steps
  begin an episode (``Rollout.episode_starts``);
- the update calls :meth:`RecurrentCore.replay` on whole (M, T) sequences from that initial
  state, resetting where an episode starts, so the gradient flows back through the rollout
  (truncated backpropagation through time, cut at the rollout's start); before any step it
  gives back the rollout's own numbers;
- evaluation and ``agent.act`` step it with a state of their own.

Separate LSTMs for actor and critic, as sb3-contrib's RecurrentPPO by default
(``enable_critic_lstm=True``, ``shared_lstm=False``), rather than CleanRL's one LSTM under both
(``ppo_atari_lstm.py``). policygrad clips the actor's and the critic's gradients apart
(:func:`policygrad.learners.parameter_groups`); a shared LSTM would sit in the actor's group,
where the value loss's gradient, large early in training, dominates the clipped norm and
shrinks the policy's own step. Measured on CartPole without velocities (PPO, seed 0, the
settings of ``tests/test_recurrent.py``): after 12k steps separate LSTMs evaluated at 110, a
shared one at 9 (one action always) — so each step runs two LSTMs. LSTM weights are orthogonal
(gain 1) with zero biases, as CleanRL initialises them.

The state is one tensor ``(B, rows, hidden)``: rows ``h, c`` of the actor's LSTM, then ``h, c``
of the critic's where there is a critic.
"""

from __future__ import annotations

import torch
from torch import nn


def lstm_cell(in_features: int, hidden_size: int) -> nn.LSTMCell:
    """An LSTM cell with orthogonal weights (gain 1) and zero biases (CleanRL's ppo_atari_lstm)."""
    cell = nn.LSTMCell(in_features, hidden_size)
    for name, param in cell.named_parameters():
        if "bias" in name:
            nn.init.zeros_(param)
        else:
            nn.init.orthogonal_(param, 1.0)
    return cell


def reset_where(state: torch.Tensor, starts: torch.Tensor | None) -> torch.Tensor:
    """``state`` (B, rows, hidden) with the rows of sequences that begin an episode (``starts`` (B,) bool) zeroed."""
    return state if starts is None else state.masked_fill(starts.view(-1, 1, 1), 0.0)


class RecurrentCore(nn.Module):
    """Features (B, F) → the actor's and the critic's LSTM outputs (B, hidden), one step at a time."""

    def __init__(self, in_features: int, hidden_size: int, critic: bool) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.actor_lstm = lstm_cell(in_features, hidden_size)
        self.critic_lstm = lstm_cell(in_features, hidden_size) if critic else None

    @property
    def state_rows(self) -> int:
        """Rows of the state: (h, c) per LSTM."""
        return 4 if self.critic_lstm is not None else 2

    def initial_state(self, batch: int) -> torch.Tensor:
        """The state at an episode's start, for ``batch`` sequences: zeros (batch, rows, hidden)."""
        return torch.zeros(batch, self.state_rows, self.hidden_size)

    def step(
        self, features: torch.Tensor, state: torch.Tensor, starts: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """One step: the actor's output (B, hidden), the critic's (or None), and the next state.

        ``starts`` (B,) bool: this step's observation begins an episode, so the state is zeroed
        before it.
        """
        cells = self._cells(features, reset_where(state, starts).unbind(1))
        return cells[0], cells[2] if len(cells) == 4 else None, torch.stack(cells, 1)

    def replay(
        self, features: torch.Tensor, initial_state: torch.Tensor, starts: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The core over whole sequences, with gradients: features (M, T, F), initial_state (M, rows, hidden),
        starts (M, T) bool → the actor's outputs (M, T, hidden) and the critic's (or None).

        The same cells the rollout's :meth:`step` ran, step by step: an episode start inside a
        sequence resets its state, as it did during collection (the rows are kept apart here and
        zeroed only at steps where some sequence starts: the same numbers, fewer operations).
        """
        resets = starts.any(0).tolist()
        cells = initial_state.unbind(1)
        actor, critic = [], []
        for t in range(features.shape[1]):
            if resets[t]:
                starting = starts[:, t].unsqueeze(1)
                cells = tuple(row.masked_fill(starting, 0.0) for row in cells)
            cells = self._cells(features[:, t], cells)
            actor.append(cells[0])
            if len(cells) == 4:
                critic.append(cells[2])
        return torch.stack(actor, 1), torch.stack(critic, 1) if critic else None

    def _cells(self, features: torch.Tensor, cells: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """(h, c[, h_critic, c_critic]) after one step from ``cells``, each (B, hidden)."""
        h, c = self.actor_lstm(features, (cells[0], cells[1]))
        if self.critic_lstm is None:
            return h, c
        h_critic, c_critic = self.critic_lstm(features, (cells[2], cells[3]))
        return h, c, h_critic, c_critic


__all__ = ["RecurrentCore", "lstm_cell", "reset_where"]

"""Small MDPs whose exact answers are known: bandits, a chain, a gridworld, the short corridor,
rock-paper-scissors against a best responder, and random MDPs from a seed."""

from __future__ import annotations

import numpy as np

from policygrad.errors import PolicygradError
from policygrad.exact.games import BestResponseGame
from policygrad.exact.mdp import TabularMDP

#: Russell & Norvig's 4×3 world: S start, G exit +1, P exit −1, # wall.
RUSSELL_NORVIG_LAYOUT = ("...G", ".#.P", "S...")
GRID_ACTIONS = ("up", "right", "down", "left")
_MOVES = {0: (-1, 0), 1: (0, 1), 2: (1, 0), 3: (0, -1)}


def chain(
    length: int = 5, slip: float = 0.1, goal_reward: float = 1.0, step_reward: float = 0.0, gamma: float = 0.9
) -> TabularMDP:
    """An episodic chain: start at the left end, the right end pays ``goal_reward`` and ends the episode.

    States 0 … length−1 and a terminal state ``length``. Actions 0 = left, 1 = right;
    with probability ``slip`` the agent moves the other way (walls at the left end).
    Every move costs ``step_reward``; any action in the goal state (the right end)
    exits with ``goal_reward``. ``theta`` is (length + 1, 2); the terminal row is unused.
    """
    if length < 2:
        raise PolicygradError(f"chain length must be >= 2, got {length}")
    if not 0.0 <= slip <= 1.0:
        raise PolicygradError(f"slip must be in [0, 1], got {slip:g}")
    S, terminal, goal = length + 1, length, length - 1
    transitions = np.zeros((S, 2, S))
    rewards = np.full((S, 2), float(step_reward))
    for s in range(goal):
        for action, direction in ((0, -1), (1, 1)):
            intended, slipped = max(s + direction, 0), max(s - direction, 0)
            transitions[s, action, intended] += 1.0 - slip
            transitions[s, action, slipped] += slip
    transitions[goal, :, terminal] = 1.0
    rewards[goal, :] = goal_reward
    transitions[terminal, :, terminal] = 1.0
    rewards[terminal, :] = 0.0
    initial = np.zeros(S)
    initial[0] = 1.0
    return TabularMDP(transitions, rewards, initial, gamma, action_names=["left", "right"])


def gridworld(
    layout: tuple[str, ...] | list[str] = RUSSELL_NORVIG_LAYOUT,
    slip: float = 0.2,
    step_reward: float = -0.04,
    goal_reward: float = 1.0,
    pit_reward: float = -1.0,
    gamma: float = 0.9,
) -> TabularMDP:
    """A small gridworld (default: Russell & Norvig's 4×3 world).

    ``layout`` rows of characters: ``.`` free, ``#`` wall, ``S`` start, ``G`` exit with
    ``goal_reward``, ``P`` exit with ``pit_reward``. Actions up, right, down, left move
    as intended with probability 1 − slip and to either perpendicular side with
    slip/2 each; bumping into a wall or the edge stays put. Any action in G or P exits
    to the terminal state (the last state). State ids number the non-wall cells row by row.
    """
    if not 0.0 <= slip <= 1.0:
        raise PolicygradError(f"slip must be in [0, 1], got {slip:g}")
    rows = [str(r) for r in layout]
    if not rows or any(len(r) != len(rows[0]) for r in rows):
        raise PolicygradError("gridworld layout must be non-empty rows of equal length")
    if any(c not in ".#SGP" for r in rows for c in r):
        raise PolicygradError("gridworld layout may only use the characters . # S G P")
    cells = [(i, j) for i, r in enumerate(rows) for j, c in enumerate(r) if c != "#"]
    index = {cell: k for k, cell in enumerate(cells)}
    starts = [index[c] for c in cells if rows[c[0]][c[1]] == "S"]
    if len(starts) != 1 or not any(rows[i][j] in "GP" for i, j in cells):
        raise PolicygradError("gridworld layout needs exactly one S and at least one G or P")
    S = len(cells) + 1
    terminal = S - 1
    transitions = np.zeros((S, 4, S))
    rewards = np.full((S, 4), float(step_reward))

    def move(cell: tuple[int, int], action: int) -> int:
        i, j = cell[0] + _MOVES[action][0], cell[1] + _MOVES[action][1]
        return index.get((i, j), index[cell]) if 0 <= i < len(rows) and 0 <= j < len(rows[0]) else index[cell]

    for cell in cells:
        s, kind = index[cell], rows[cell[0]][cell[1]]
        if kind in "GP":
            transitions[s, :, terminal] = 1.0
            rewards[s, :] = goal_reward if kind == "G" else pit_reward
            continue
        for action in range(4):
            transitions[s, action, move(cell, action)] += 1.0 - slip
            for side in ((action + 1) % 4, (action + 3) % 4):
                transitions[s, action, move(cell, side)] += slip / 2
    transitions[terminal, :, terminal] = 1.0
    rewards[terminal, :] = 0.0
    initial = np.zeros(S)
    initial[starts[0]] = 1.0
    return TabularMDP(transitions, rewards, initial, gamma, action_names=list(GRID_ACTIONS))


def short_corridor() -> TabularMDP:
    """The short corridor with switched actions (Sutton & Barto 2018, Example 13.1).

    Three non-terminal states and a goal; reward −1 per step, γ = 1. Left and right
    move as expected in states 0 and 2, but are switched in state 1; left in state 0
    stays. All states look the same to the policy (``theta`` is (1, 2)), so it picks
    right with one probability p everywhere. Then J(p) = 2(p − 2) / (p(1 − p)),
    maximised by the stochastic p* = 2 − √2 ≈ 0.586 with J* = −(6 + 4√2) ≈ −11.66;
    both deterministic policies never reach the goal.
    """
    S, goal = 4, 3
    left, right = 0, 1
    transitions = np.zeros((S, 2, S))
    transitions[0, left, 0] = transitions[0, right, 1] = 1.0
    transitions[1, left, 2] = transitions[1, right, 0] = 1.0  # switched
    transitions[2, left, 1] = transitions[2, right, goal] = 1.0
    transitions[goal, :, goal] = 1.0
    rewards = np.full((S, 2), -1.0)
    rewards[goal] = 0.0
    return TabularMDP(
        transitions, rewards, np.array([1.0, 0, 0, 0]), 1.0, observations=[0, 0, 0, 0], action_names=["left", "right"]
    )


def short_corridor_value(p_right: float) -> float:
    """The short corridor's exact J for P(right) = p: 2(p − 2) / (p(1 − p)); −inf at p ∈ {0, 1}."""
    if p_right <= 0.0 or p_right >= 1.0:
        return float("-inf")
    return 2.0 * (p_right - 2.0) / (p_right * (1.0 - p_right))


def rock_paper_scissors() -> BestResponseGame:
    """Rock-paper-scissors (win +1, lose −1, tie 0) against an opponent that best-responds to π.

    The worst case of any deterministic policy is −1; the uniform policy guarantees 0,
    the optimum.
    """
    payoff = np.array([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]])  # rows: rock, paper, scissors
    return BestResponseGame(payoff, action_names=["rock", "paper", "scissors"])


def random_mdp(
    num_states: int = 5, num_actions: int = 3, seed: int = 0, gamma: float = 0.9, termination: float = 0.1
) -> TabularMDP:
    """A random MDP: Dirichlet(1) transitions, N(0, 1) rewards, a Dirichlet(1) start distribution.

    Every (s, a) also ends the episode with probability ``termination`` (an extra
    terminal state, the last), so with ``termination`` > 0 even γ = 1 is allowed.
    ``theta`` is (num_states + 1, num_actions).
    """
    if num_states < 1 or num_actions < 1:
        raise PolicygradError("random_mdp needs num_states >= 1 and num_actions >= 1")
    if not 0.0 <= termination <= 1.0:
        raise PolicygradError(f"termination must be in [0, 1], got {termination:g}")
    rng = np.random.default_rng(seed)
    S = num_states + 1
    transitions = np.zeros((S, num_actions, S))
    transitions[:num_states, :, :num_states] = rng.dirichlet(np.ones(num_states), (num_states, num_actions))
    transitions[:num_states] *= 1.0 - termination
    transitions[:num_states, :, num_states] = termination
    transitions[num_states, :, num_states] = 1.0
    rewards = np.zeros((S, num_actions))
    rewards[:num_states] = rng.normal(size=(num_states, num_actions))
    initial = np.zeros(S)
    initial[:num_states] = rng.dirichlet(np.ones(num_states))
    return TabularMDP(transitions, rewards, initial, gamma)

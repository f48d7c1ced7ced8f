"""Task rewards on hand-written responses, and corpora that are fluent but not good."""

import torch

from policygrad.lm.tasks import BOS, DIGIT0, EOS, PAD, SEP, get_task, target_optimum


def digits(*ds):
    return [DIGIT0 + d for d in ds]


def test_target_reward_is_fraction_of_matching_tokens():
    task = get_task("target")
    prompts = torch.tensor([[BOS, DIGIT0 + 7, SEP]] * 2)
    responses = torch.tensor([digits(7, 7, 1, 7, 0, 0, 0, 7), [EOS] + digits(7) * 7])
    assert task.reward(prompts, responses).tolist() == [0.5, 7 / 8]


def test_sum_reward_hand_worked():
    task = get_task("sum")
    prompts = torch.tensor([[BOS, DIGIT0 + 1, DIGIT0 + 2, SEP]] * 4)  # S = 12
    responses = torch.tensor(
        [
            digits(3, 3, 3, 3) + [EOS],  # exact
            digits(9, 0, 0, 0) + [EOS],  # off by 3
            digits(3, 3, 3) + [EOS, PAD],  # three digits: malformed
            digits(3, 3, 3, 3, 0),  # no <eos>: malformed
        ]
    )
    torch.testing.assert_close(task.reward(prompts, responses), torch.tensor([1.0, 0.25, 0.0, 0.0]))
    assert task.success(prompts, responses).tolist() == [True, False, False, False]


def test_sort_reward_hand_worked():
    task = get_task("sort")
    prompts = torch.tensor([[BOS, *digits(3, 1, 2, 9, 0, 5), SEP]] * 2)
    responses = torch.tensor([digits(0, 1, 2, 3, 5, 9) + [EOS], digits(0, 1, 2, 3, 9, 5) + [EOS]])
    torch.testing.assert_close(task.reward(prompts, responses), torch.tensor([1.0, 4 / 6]))


def test_corpora_are_well_formed_and_only_partly_right():
    g = torch.Generator().manual_seed(0)
    for name in ("target", "sum", "sort"):
        task = get_task(name)
        sequences = task.corpus(2000, g)
        assert sequences.shape == (2000, task.sequence_length)
        prompts, responses = sequences[:, : task.prompt_length], sequences[:, task.prompt_length :]
        rewards = task.reward(prompts, responses)
        success = task.success(prompts, responses).float().mean().item()
        if name != "target":
            assert (rewards > 0).all(), f"{name}: corpus responses must be well formed"
        assert 0.05 < success < 0.7 or name == "target", (name, success)


def test_sum_corpus_hits_the_sum_at_the_stated_rate():
    task = get_task("sum")
    g = torch.Generator().manual_seed(1)
    sequences = task.corpus(20000, g)
    success = task.success(sequences[:, :4], sequences[:, 4:]).float().mean().item()
    assert abs(success - task.exact_fraction) < 0.02


def test_target_optimum_closed_form():
    # q = 0.1, L = 8, β = 0.125: c = 1, p* = 0.1e / (0.1e + 0.9)
    out = target_optimum(0.1, 0.125, 8)
    p = 0.1 * torch.e / (0.1 * torch.e + 0.9)
    assert abs(out["reward"] - p) < 1e-12
    # it maximises the per-token objective p − β·L·KL(Bern(p)‖Bern(q)) / L over a grid
    grid = torch.linspace(0.01, 0.99, 9801, dtype=torch.float64)
    objective = grid - 0.125 * 8 * (grid * (grid / 0.1).log() + (1 - grid) * ((1 - grid) / 0.9).log())
    assert abs(grid[objective.argmax()].item() - p) < 1e-3

"""policygrad's GRPO loss family equals TRL's GRPOTrainer loss and gradient on identical inputs (bench extra).

Runs ``benchmarks/lm_trl_parity.py``'s comparison for every loss_type × scale_rewards ×
importance_sampling_level (× KL on/off, truncation masking, one or two minibatches);
skipped where TRL is not installed (``pip install 'policygrad[bench]'``).
"""

import importlib.util
from pathlib import Path

import pytest
import torch

pytest.importorskip("trl")

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "lm_trl_parity.py"
spec = importlib.util.spec_from_file_location("lm_trl_parity", PATH)
parity = importlib.util.module_from_spec(spec)
spec.loader.exec_module(parity)


@pytest.fixture(autouse=True)
def float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def cases():
    """One setting per loss_type × scale_rewards × level; KL, masking and minibatches cycle through theirs.

    The benchmark runs every crossing (8 per combination, 3 seeds); the suite keeps one each.
    """
    every = parity.settings()
    per_key = len(every) // (len(parity.LOSS_TYPES) * len(parity.SCALE_REWARDS) * 2)
    return [every[per_key * j + j % per_key] for j in range(len(every) // per_key)]


@pytest.mark.parametrize("setting", cases(), ids=lambda s: "-".join(str(v) for v in list(s.values())[:6]))
def test_loss_and_gradient_equal_trl(setting):
    loss_diff, grad_diff = parity.compare(setting, seed=1)
    assert loss_diff <= parity.TOLERANCE and grad_diff <= parity.TOLERANCE, (loss_diff, grad_diff)


def test_the_cases_cover_every_option():
    chosen = cases()
    assert len(chosen) == len(parity.LOSS_TYPES) * len(parity.SCALE_REWARDS) * 2
    for key in ("beta", "mask_truncated", "minibatches"):
        assert len({s[key] for s in chosen}) == 2, key

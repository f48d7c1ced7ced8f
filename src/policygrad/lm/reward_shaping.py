r"""DAPO's soft overlong punishment: a length penalty added to the task reward (Yu et al. 2025, eq. 13).

.. math::

    R_{length}(y) = \begin{cases} 0 & |y| \le L_{max} - L_{cache} \\
        \frac{(L_{max} - L_{cache}) - |y|}{L_{cache}} & L_{max} - L_{cache} < |y| \le L_{max} \\
        -1 & L_{max} < |y| \end{cases}

TRL ships the same function as ``trl.rewards.get_soft_overlong_punishment(max_completion_len,
soft_punish_cache)``; here L_max is the task's response budget and L_cache the config's
``soft_punish_cache``.
"""

from __future__ import annotations

import torch


def soft_overlong_penalty(lengths: torch.Tensor, max_length: int, cache: int) -> torch.Tensor:
    """R_length of responses of ``lengths`` (N,) tokens, (N,) floats in [−1, 0]; zeros when ``cache`` is 0."""
    lengths = lengths.to(torch.float32)
    if cache <= 0:
        return torch.zeros_like(lengths)
    free = max_length - cache
    ramp = ((free - lengths) / cache).clamp(max=0.0)
    return torch.where(lengths > max_length, torch.full_like(lengths, -1.0), ramp)

"""Named random streams, all derived from the one seed of a run.

Every random choice policygrad makes draws from a stream keyed by (seed, stream, …):
the action noise of environment 3 at update 17 is ``stream_seed(seed, Stream.ACTION_NOISE,
17, 3)``, whichever process or Ray worker steps that environment. Keys, not shared
generators, are what make a resumed run and a sharded run draw exactly the numbers of an
uninterrupted single-process one. Each purpose has its own stream: two purposes on one
stream would draw correlated numbers.
"""

from __future__ import annotations

import hashlib
from enum import IntEnum


class Stream(IntEnum):
    """The purposes random numbers are drawn for (the value is part of the key, so never reuse one)."""

    ACTION_NOISE = 1  # the rollout's sampling noise, per (update, env index)
    MINIBATCH_ORDER = 2  # PPO's shuffles, per update
    GRADIENT_VARIANCE = 3  # the subsets of the gradient-variance diagnostic
    EPISODE_RESETS = 5  # reset seeds of whole-episode collection, per (update, env index)
    LM_PRETRAIN = 10  # the LM pretraining batches
    LM_PRETRAIN_EVAL = 11  # the LM pretraining evaluation
    LM_ROLLOUT = 20  # the LM trainer's prompts and samples, per update
    LM_MINIBATCH_ORDER = 21  # the LM algorithms' shuffles, per update
    LM_EVALUATION = 30  # the LM trainer's evaluation
    LM_SAMPLE = 40  # `policygrad lm sample`


def seed_of_key(key: str) -> int:
    """A 63-bit seed from a key such as "seed/1/update/env": the first 8 bytes of its BLAKE2b digest."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little") >> 1


def stream_seed(seed: int, stream: Stream, *keys: int) -> int:
    """The seed of ``stream`` at ``keys`` (update, env index, …) for a run seeded ``seed``."""
    return seed_of_key("/".join(map(str, (seed, int(stream), *keys))))


__all__ = ["Stream", "seed_of_key", "stream_seed"]

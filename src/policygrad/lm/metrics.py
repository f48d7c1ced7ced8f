"""metrics.csv and TensorBoard for token training: one row per update, a fixed column list."""

from __future__ import annotations

from policygrad.run_log import MetricsLog

COLUMNS = [
    "update",
    "tokens",
    "wall_time",
    "reward_mean",
    "success_rate",
    "kl_k1",
    "kl_k3",
    "entropy",
    "response_length_mean",
    "policy_loss",
    "kl_loss",
    "value_loss",
    "approx_kl",
    "clip_fraction",
    "explained_variance",
    "grad_norm",
    "sampling_rounds",
    "signal_fraction",
    "learning_rate",
    "tokens_per_second",
]


class LMMetricsLog(MetricsLog):
    """:class:`~policygrad.run_log.MetricsLog` with the token columns; TensorBoard's step is the update.

    Every row goes to TensorBoard (an LM update takes far longer than writing an event).
    """

    columns = COLUMNS
    step_column = "update"
    tag_prefix = "lm"
    counters = ("update", "tokens")
    tensorboard_interval = 0.0

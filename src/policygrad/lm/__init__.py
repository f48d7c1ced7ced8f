"""Token-level language-model policies: the same chain (REINFORCE → RLOO → GRPO → PPO) on a small transformer.

A response is an (N, T) rollout with a mask, so the same ``gae``, losses and
``Rollout`` serve tokens. Modules: ``model`` (the transformer, KV cache),
``generation`` (inverse-CDF sampling, scoring), ``tasks`` (target, sum, sort and their
corpora), ``pretrain`` (the reference), ``rollout`` (token rollouts), ``losses``
(reductions, KL estimators), ``algorithms`` (one module per step), ``trainer`` (the
loop, checkpoints, summary), ``exact`` (the enumerable LM bandit), ``hf`` (a local
Hugging Face model as policy), ``cli`` (``policygrad lm …``). See docs/lm.md.

Python API::

    from policygrad.lm.trainer import train
    summary = train("rloo", "sum", run_dir="runs/rloo-sum")
"""

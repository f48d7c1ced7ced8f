"""Ray: rollout workers (:mod:`~policygrad.distributed.ray_backend`) and the pieces they share.

Entered only for ``backend="ray"``: a local run never imports this package. The choice
between local and Ray collection, and the interface both satisfy
(:class:`~policygrad.collectors.RolloutBackend`), live in :mod:`policygrad.collectors`;
they are re-exported here for code that imported them from this package.

Ray is an optional extra (``pip install 'policygrad[ray]'``). See docs/distributed.md.
"""

from __future__ import annotations

from policygrad.collectors import BACKENDS, RolloutBackend, make_collector

__all__ = ["BACKENDS", "RolloutBackend", "make_collector"]

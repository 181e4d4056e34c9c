"""Argo CD's retry and self-heal backoff, as pure functions of attempt counts.

- Sync retry (``spec.syncPolicy.retry``): after the n-th failed attempt (n counted from 0)
  wait ``min(maxDuration, duration * factor**n)``; ``limit`` < 0 retries forever, 0 never.
  Defaults 5 s, factor 2, 3 min (Argo's ``NextRetryAt``).
- Self-heal (argo-cd#20275): the first heal of a drift runs at once, the k-th after that
  waits ``min(cap, 2 s * 3**(k-1))`` (Kubernetes ``wait.Backoff`` with duration 2 s, factor 3,
  cap 300 s), measured from the previous sync operation.
"""

from __future__ import annotations

from dataclasses import dataclass

from hub.sync.model import RetryPolicy


def should_retry(policy: RetryPolicy | None, retries_done: int) -> bool:
    """May another attempt start after ``retries_done`` retries have already run?"""
    if policy is None:
        return False
    return policy.limit < 0 or retries_done < policy.limit


def retry_delay_s(policy: RetryPolicy | None, retries_done: int) -> float:
    """Seconds to wait before retry number ``retries_done + 1``."""
    backoff = policy.backoff if policy is not None else RetryPolicy().backoff
    wait = backoff.duration_s * float(backoff.factor) ** max(retries_done, 0)
    if backoff.max_duration_s > 0:
        wait = min(backoff.max_duration_s, wait)
    return wait


@dataclass(frozen=True, kw_only=True)
class SelfHealBackoff:
    duration_s: float = 2.0
    factor: float = 3.0
    cap_s: float = 300.0

    def delay_s(self, attempts: int) -> float:
        """Delay owed before self-heal attempt ``attempts + 1`` (0 for the first)."""
        if attempts <= 0:
            return 0.0
        return min(self.cap_s, self.duration_s * self.factor ** (attempts - 1))

    def remaining_s(self, attempts: int, since_last_sync_s: float) -> float:
        """How long to wait still, given the time since the previous sync operation."""
        return max(0.0, self.delay_s(attempts) - since_last_sync_s)

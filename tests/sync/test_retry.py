"""Argo CD's sync retry backoff and the self-heal backoff."""

from __future__ import annotations

import pytest

from hub.sync.model import Backoff, RetryPolicy
from hub.sync.retry import SelfHealBackoff, retry_delay_s, should_retry


@pytest.mark.parametrize(
    ("retries_done", "wait"),
    [(0, 5), (1, 10), (2, 20), (3, 40), (4, 80), (5, 160), (6, 180), (20, 180)],
)
def test_default_backoff_doubles_from_5s_up_to_3m(retries_done: int, wait: float) -> None:
    assert retry_delay_s(RetryPolicy(limit=10), retries_done) == wait


def test_custom_backoff() -> None:
    policy = RetryPolicy(limit=3, backoff=Backoff(duration_s=2, factor=3, max_duration_s=30))
    assert [retry_delay_s(policy, n) for n in range(4)] == [2, 6, 18, 30]
    unbounded = RetryPolicy(limit=3, backoff=Backoff(duration_s=1, factor=2, max_duration_s=0))
    assert retry_delay_s(unbounded, 10) == 1024


@pytest.mark.parametrize(
    ("limit", "done", "retry"),
    [(0, 0, False), (2, 0, True), (2, 1, True), (2, 2, False), (-1, 1000, True)],
)
def test_retry_limit(limit: int, done: int, retry: bool) -> None:
    assert should_retry(RetryPolicy(limit=limit), done) is retry
    assert should_retry(None, 0) is False


def test_self_heal_backoff_first_heal_at_once_then_exponential_with_a_cap() -> None:
    backoff = SelfHealBackoff()
    assert [backoff.delay_s(n) for n in range(7)] == [0, 2, 6, 18, 54, 162, 300]
    assert backoff.remaining_s(2, since_last_sync_s=4) == 2
    assert backoff.remaining_s(2, since_last_sync_s=60) == 0

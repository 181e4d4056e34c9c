"""The simulator's clock: now, and Kubernetes' timestamp text for it.

One place for both the server (``store``: managedFields times, deletion timestamps) and
the controllers (conditions, start times), which stamp the same second many times over
in a rollout: each second is formatted once.
"""

from __future__ import annotations

import math
import time
from typing import Any

# The last second formatted, and its text.
_LAST_STAMP: list[Any] = [None, ""]


def now_epoch() -> float:
    return time.time()


def rfc3339(epoch: float | None = None) -> str:
    """Kubernetes' metav1.Time wire format: UTC, whole seconds (truncated); now when
    ``epoch`` is None."""
    second = math.floor(now_epoch() if epoch is None else epoch)
    if _LAST_STAMP[0] == second:
        return str(_LAST_STAMP[1])
    text = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))
    _LAST_STAMP[0], _LAST_STAMP[1] = second, text
    return text

"""Per-cluster faults a test can switch on at run time: latency, errors, outages."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any, Literal

Outage = Literal["refuse", "hang"]
OUTAGES: tuple[str, ...] = ("refuse", "hang")


class FaultError(ValueError):
    """Fault settings that make no sense; the message names the setting."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultSettings:
    """What a cluster does wrong. The default is nothing."""

    latency: float = 0.0  # seconds added before every request is handled
    error_rate: float = 0.0  # share of requests answered with ``error_code``
    error_code: int = 503  # 500 or 503
    outage: Outage | None = None  # "refuse": close without answering; "hang": never answer
    # seconds each watch event reaches open watch streams late (a lagging watch cache)
    watch_delay: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.latency <= 3600:
            raise FaultError(f"latency must be between 0 and 3600 seconds, not {self.latency}")
        if not 0.0 <= self.watch_delay <= 3600:
            raise FaultError(
                f"watch_delay must be between 0 and 3600 seconds, not {self.watch_delay}"
            )
        if not 0.0 <= self.error_rate <= 1.0:
            raise FaultError(f"error_rate must be between 0 and 1, not {self.error_rate}")
        if self.error_code not in (500, 503):
            raise FaultError(f"error_code must be 500 or 503, not {self.error_code}")
        if self.outage is not None and self.outage not in OUTAGES:
            raise FaultError(
                f"outage must be one of {', '.join(OUTAGES)} or null, not {self.outage!r}"
            )

    @classmethod
    def parse(cls, data: Any) -> FaultSettings:
        """From JSON (the admin endpoint); unknown keys and wrong types are errors."""
        if not isinstance(data, dict):
            raise FaultError("fault settings must be a JSON object")
        unknown = set(data) - {"latency", "error_rate", "error_code", "outage", "watch_delay"}
        if unknown:
            raise FaultError(f"unknown fault settings: {', '.join(sorted(unknown))}")
        try:
            return cls(
                latency=float(data.get("latency", 0.0)),
                error_rate=float(data.get("error_rate", 0.0)),
                error_code=int(data.get("error_code", 503)),
                outage=data.get("outage"),
                watch_delay=float(data.get("watch_delay", 0.0)),
            )
        except (TypeError, ValueError) as exc:
            if isinstance(exc, FaultError):
                raise
            raise FaultError(f"invalid fault settings: {exc}") from None

    @property
    def active(self) -> bool:
        return bool(self.latency or self.error_rate or self.outage or self.watch_delay)

    def should_fail(self) -> bool:
        return self.error_rate > 0 and random.random() < self.error_rate

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


NO_FAULTS = FaultSettings()

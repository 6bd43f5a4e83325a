"""Per-operation token-bucket rate limits, with AWS's published quotas as the defaults."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

# AWS's published quotas (per account and region). ResolveCustomer has no published quota;
# the emulator gives it the same 10 per second as the metering calls.
DEFAULT_RATE_LIMITS: Final[Mapping[str, float]] = {
    "BatchMeterUsage": 10.0,
    "MeterUsage": 10.0,
    "RegisterUsage": 5.0,
    "ResolveCustomer": 10.0,
}


@dataclass
class _Bucket:
    rate: float
    capacity: float
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets by operation: ``rate`` tokens per second, burst of one second's worth.

    A rate of ``None`` or ``0`` means unlimited. Thread-safe: one lock guards every bucket.
    """

    def __init__(
        self,
        limits: Mapping[str, float | None] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        merged: dict[str, float | None] = {**DEFAULT_RATE_LIMITS, **(limits or {})}
        for operation, rate in merged.items():
            self.set(operation, rate)

    def set(self, operation: str, per_second: float | None) -> None:
        """Limit ``operation`` to ``per_second`` calls (None or 0: unlimited); refill its bucket."""
        if per_second is not None and per_second < 0:
            raise ValueError(f"rate limit for {operation} must be >= 0, not {per_second}")
        with self._lock:
            if not per_second:
                self._buckets.pop(operation, None)
                return
            capacity = max(per_second, 1.0)
            self._buckets[operation] = _Bucket(per_second, capacity, capacity, self._clock())

    def limits(self) -> dict[str, float | None]:
        """Return the configured rate of every operation that has one."""
        with self._lock:
            return {operation: bucket.rate for operation, bucket in sorted(self._buckets.items())}

    def allow(self, operation: str) -> bool:
        """Take one token for ``operation``; False when its bucket is empty (throttle the call)."""
        with self._lock:
            bucket = self._buckets.get(operation)
            if bucket is None:
                return True
            now = self._clock()
            bucket.tokens = min(
                bucket.capacity, bucket.tokens + (now - bucket.updated) * bucket.rate
            )
            bucket.updated = now
            if bucket.tokens < 1.0:
                return False
            bucket.tokens -= 1.0
            return True

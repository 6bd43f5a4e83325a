"""The seller account's BatchMeterUsage quota (10/s), kept by every sender that shares it.

``LocalRateGate`` is a token bucket in this process; ``StoreRateGate`` keeps the bucket in a store
that offers ``take_token`` (PostgreSQL), so every replica sending to one account shares one quota.
Both wait on an event, so a shutdown ends the wait at once.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

DEFAULT_RATE = 10.0  # AWS's BatchMeterUsage quota per account and region


class RateGate(Protocol):
    """Lets one call through per token; ``wait_turn`` returns False when ``stop`` was set."""

    def wait_turn(self, stop: threading.Event) -> bool:
        """Block until a call may be made (True) or ``stop`` is set (False)."""
        ...


class TokenSource(Protocol):
    """A store that keeps token buckets (``PostgresStore.take_token``)."""

    def take_token(self, name: str, *, rate: float, burst: float) -> float:
        """Take a token, or answer how long to wait before asking again."""
        ...


class LocalRateGate:
    """A token bucket on the monotonic clock, shared by the threads of this process."""

    def __init__(self, rate: float = DEFAULT_RATE, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self._tokens = self.burst
        self._updated = time.monotonic()
        self._lock = threading.Lock()

    def _take(self) -> float:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            if self._tokens >= 1:
                self._tokens -= 1
                return 0.0
            return (1 - self._tokens) / self.rate

    def wait_turn(self, stop: threading.Event) -> bool:
        """Block until a token is free or ``stop`` is set."""
        while not stop.is_set():
            wait = self._take()
            if wait <= 0:
                return True
            stop.wait(wait)
        return False


class StoreRateGate:
    """A token bucket kept in the shared store: one quota for every replica."""

    def __init__(self, source: TokenSource, *, name: str, rate: float = DEFAULT_RATE) -> None:
        self.source = source
        self.name = name
        self.rate = rate
        self.burst = max(1.0, rate)

    def wait_turn(self, stop: threading.Event) -> bool:
        """Block until the shared bucket gives a token or ``stop`` is set."""
        while not stop.is_set():
            wait = self.source.take_token(self.name, rate=self.rate, burst=self.burst)
            if wait <= 0:
                return True
            stop.wait(wait)
        return False

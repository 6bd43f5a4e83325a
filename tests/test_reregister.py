"""Background re-registration for applications using the import API, against the emulator."""

from __future__ import annotations

import random
import threading
import time
from typing import Generic, TypeVar

import pytest

from marketplace_entitlement import (
    ConfigurationError,
    Entitlement,
    EntitlementError,
    Reregistration,
    load_settings,
    start_reregistration,
)
from marketplace_entitlement.emulator import Emulator
from marketplace_entitlement.entitlement._gate import Gate

T = TypeVar("T")


class Collected(Generic[T]):
    """A callback that records what it is given; ``enough`` is set once ``count`` arrived."""

    def __init__(self, count: int) -> None:
        self.items: list[T] = []
        self.enough = threading.Event()
        self._count = count

    def __call__(self, item: T) -> None:
        """Record ``item``."""
        self.items.append(item)
        if len(self.items) >= self._count:
            self.enough.set()


def test_reregisters_periodically_with_fresh_nonces(
    service: Emulator, aws_env: dict[str, str]
) -> None:
    """start_reregistration re-registers every interval, each time verified with a new nonce."""
    successes: Collected[Entitlement] = Collected(3)
    handle = start_reregistration(interval=0.2, on_success=successes)
    try:
        assert successes.enough.wait(20)
    finally:
        handle.stop()
    assert not handle.running
    assert all(e.verified for e in successes.items)
    assert len({e.nonce for e in successes.items}) == len(successes.items)


def test_failures_reach_on_failure_and_the_loop_goes_on(
    service: Emulator, aws_env: dict[str, str]
) -> None:
    """A failed round calls on_failure with the error; later rounds still run."""
    service.set_product("prod-test123", "not_entitled")
    failures: Collected[EntitlementError] = Collected(2)
    handle = start_reregistration(interval=0.2, on_failure=failures)
    try:
        assert failures.enough.wait(20)
    finally:
        handle.stop()
    assert all(f.exit_code == 77 for f in failures.items)


def test_stop_ends_the_wait_at_once(service: Emulator, aws_env: dict[str, str]) -> None:
    """stop() during a long interval wait returns promptly and no registration happens."""
    handle = Reregistration(Gate(load_settings()), interval=3600).start()
    started = time.monotonic()
    handle.stop(timeout=5)
    assert not handle.running
    assert time.monotonic() - started < 5
    assert service.requests() == []


def test_waits_are_jittered_around_the_interval(aws_env: dict[str, str]) -> None:
    """Each wait is the interval +/- 10%, so containers started together drift apart."""
    handle = Reregistration(Gate(load_settings()), interval=100, rng=random.Random(7))
    waits = [handle.next_wait() for _ in range(200)]
    assert all(90 <= w <= 110 for w in waits)
    assert max(waits) - min(waits) > 10


@pytest.mark.parametrize("interval", [-1, float("inf"), float("nan"), 10**400, 1e12])
def test_interval_out_of_range_is_refused(aws_env: dict[str, str], interval: float) -> None:
    """A negative, infinite, NaN or huge interval is refused, naming the interval variable."""
    with pytest.raises(ConfigurationError, match="MARKETPLACE_REREGISTER_INTERVAL"):
        Reregistration(Gate(load_settings()), interval=interval)


def test_interval_zero_gives_a_handle_that_does_nothing(
    service: Emulator, aws_env: dict[str, str]
) -> None:
    """MARKETPLACE_REREGISTER_INTERVAL=0 turns it off: start_reregistration returns an idle handle."""
    handle = start_reregistration(reregister_interval="0")
    assert not handle.running
    handle.stop()
    assert service.requests() == []


@pytest.mark.parametrize("rule", ["first-call", "every-call"])
def test_rounds_after_an_unsubscribe_follow_the_services_rule(
    service: Emulator, aws_env: dict[str, str], rule: str
) -> None:
    """After an unsubscribe, a registered task's rounds succeed as on AWS (first-call rule).

    With the emulator's opt-in every-call rule the same rounds fail with 77.
    """
    service.set_entitlement_check(rule)
    gate = Gate(load_settings())
    gate.check()  # the task registers at startup
    service.set_product("prod-test123", "not_entitled")
    successes: Collected[Entitlement] = Collected(2)
    failures: Collected[EntitlementError] = Collected(2)
    handle = Reregistration(gate, interval=0.2, on_success=successes, on_failure=failures).start()
    try:
        assert (successes if rule == "first-call" else failures).enough.wait(20)
    finally:
        handle.stop()
    if rule == "first-call":
        assert failures.items == []
    else:
        assert successes.items == []
        assert {error.exit_code for error in failures.items} == {77}

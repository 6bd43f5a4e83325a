"""Token-bucket rate limits: AWS's quotas by default, exact under concurrency, configurable."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from marketplace_entitlement.emulator import Emulator
from marketplace_entitlement.emulator._limits import DEFAULT_RATE_LIMITS, RateLimiter

THREADS = 16
CALLS_PER_THREAD = 8


def test_defaults_are_aws_quotas(emulator: Emulator) -> None:
    """RegisterUsage 5/s, MeterUsage and BatchMeterUsage 10/s, ResolveCustomer 10/s (chosen)."""
    assert emulator.rate_limits() == {
        "BatchMeterUsage": 10.0,
        "MeterUsage": 10.0,
        "RegisterUsage": 5.0,
        "ResolveCustomer": 10.0,
    }
    assert dict(DEFAULT_RATE_LIMITS) == emulator.rate_limits()


def test_bucket_arithmetic_with_a_fake_clock() -> None:
    """Burst of one second's worth, then refills at the rate, never above the burst."""
    now = [0.0]
    limiter = RateLimiter({"RegisterUsage": 5}, clock=lambda: now[0])
    assert [limiter.allow("RegisterUsage") for _ in range(6)] == [True] * 5 + [False]
    now[0] += 0.2  # one token back
    assert [limiter.allow("RegisterUsage") for _ in range(2)] == [True, False]
    now[0] += 100.0  # refills to the burst only
    assert sum(limiter.allow("RegisterUsage") for _ in range(10)) == 5


def test_the_lock_hands_out_exactly_the_burst_to_concurrent_callers() -> None:
    """With the clock frozen, 16 threads racing for a burst of 50 get exactly 50 tokens."""
    limiter = RateLimiter({"MeterUsage": 50}, clock=lambda: 0.0)
    granted: list[bool] = []
    granted_lock = threading.Lock()
    start = threading.Barrier(THREADS)

    def take() -> None:
        start.wait()
        results = [limiter.allow("MeterUsage") for _ in range(100)]
        with granted_lock:
            granted.extend(results)

    threads = [threading.Thread(target=take) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(granted) == 50
    assert len(granted) == THREADS * 100


def test_concurrent_clients_are_throttled_to_the_bucket(
    emulator: Emulator, make_client: Any
) -> None:
    """16 clients hammering RegisterUsage get at most burst + rate x elapsed successes."""
    clients = [make_client(emulator) for _ in range(THREADS)]
    outcomes: list[str] = []
    outcomes_lock = threading.Lock()
    start = threading.Barrier(THREADS)

    def hammer(client: Any) -> None:
        start.wait()
        for _ in range(CALLS_PER_THREAD):
            try:
                client.register_usage(ProductCode="p", PublicKeyVersion=1)
                result = "ok"
            except ClientError as error:
                result = str(error.response["Error"]["Code"])
            with outcomes_lock:
                outcomes.append(result)

    threads = [threading.Thread(target=hammer, args=(client,)) for client in clients]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    successes = outcomes.count("ok")
    assert len(outcomes) == THREADS * CALLS_PER_THREAD
    assert set(outcomes) <= {"ok", "ThrottlingException"}
    assert 5 <= successes <= 5 + 5 * elapsed + 1
    assert outcomes.count("ThrottlingException") == len(outcomes) - successes > 0


@pytest.mark.parametrize("off", [None, 0])
def test_limits_can_be_switched_off(
    make_emulator: Any, make_client: Any, off: float | None
) -> None:
    """rate_limits={"RegisterUsage": None} (or 0) lets any number of calls through."""
    client = make_client(make_emulator(rate_limits={"RegisterUsage": off}))
    for _ in range(25):
        assert client.register_usage(ProductCode="p", PublicKeyVersion=1)["Signature"]


def test_limits_can_change_while_running(emulator: Emulator, client: Any) -> None:
    """set_rate_limit applies at once: 1/s throttles the second quick call."""
    emulator.set_rate_limit("ResolveCustomer", 1)
    token = emulator.create_customer("p").registration_token
    client.resolve_customer(RegistrationToken=token)
    with pytest.raises(ClientError) as excinfo:
        client.resolve_customer(RegistrationToken=token)
    assert excinfo.value.response["Error"]["Code"] == "ThrottlingException"


def test_unknown_operation_or_negative_rate_is_refused(emulator: Emulator) -> None:
    """Rate limits name a real operation and a non-negative rate."""
    with pytest.raises(ValueError, match="unknown operation"):
        emulator.set_rate_limit("GetEntitlements", 1)
    with pytest.raises(ValueError, match=">= 0"):
        emulator.set_rate_limit("MeterUsage", -1)

"""The account's quota: one token bucket per process, or one in PostgreSQL shared by replicas."""

from __future__ import annotations

import threading

from marketplace_entitlement.saas._rate import LocalRateGate, StoreRateGate
from marketplace_entitlement.store._postgres import PostgresStore


def test_replicas_share_one_bucket_in_postgresql(postgres_url: str) -> None:
    """Two stores (two replicas' connections) draw from one bucket: the burst is shared, not doubled."""
    first, second = PostgresStore(postgres_url), PostgresStore(postgres_url)
    try:
        waits = [
            store.take_token("BatchMeterUsage", rate=0.01, burst=3)
            for store in (first, second, first, second)
        ]
    finally:
        first.close()
        second.close()
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3] > 0


def test_a_store_gate_returns_false_once_stopped(postgres_url: str) -> None:
    """Waiting for the shared quota ends at once when the sender is asked to stop."""
    store = PostgresStore(postgres_url)
    try:
        gate = StoreRateGate(store, name="q", rate=0.001)
        stop = threading.Event()
        assert gate.wait_turn(stop)  # the one token of the burst
        stop.set()
        assert not gate.wait_turn(stop)
    finally:
        store.close()


def test_local_gate_lets_the_burst_through_then_waits() -> None:
    """A local bucket of rate 0.001/s and burst 2: two turns, then a stopped wait returns False."""
    gate = LocalRateGate(rate=0.001, burst=2)
    stop = threading.Event()
    assert gate.wait_turn(stop)
    assert gate.wait_turn(stop)
    timer = threading.Timer(0.2, stop.set)
    timer.start()
    assert not gate.wait_turn(stop)
    timer.join()

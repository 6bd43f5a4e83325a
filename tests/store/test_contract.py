"""The usage store's contract (``store._base``), run against every backend ``store_url`` names."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import threading
from collections.abc import Mapping
from decimal import Decimal
from multiprocessing.synchronize import Event as ProcessEvent
from typing import cast

import pytest

from marketplace_entitlement.store import (
    HOUR,
    Frozen,
    LeaseLostError,
    PayloadBuilder,
    Usage,
    UsageStore,
    open_store,
)

H0 = 1_800_000_000 // HOUR * HOUR
H1, H2, H3 = H0 + HOUR, H0 + 2 * HOUR, H0 + 3 * HOUR


def build(stream: str, hour: int, allocations: Mapping[str, Decimal]) -> Frozen:
    """A payload naming the stream, hour and total; everything goes into it."""
    total = sum(allocations.values(), Decimal(0))
    payload = json.dumps({"stream": stream, "hour": hour, "total": str(total)}, sort_keys=True)
    return Frozen(payload=payload, sent=dict(allocations), remainder={})


def capped(limit: Decimal) -> PayloadBuilder:
    """A builder sending at most ``limit`` per record (untagged), the rest carried."""

    def build_capped(stream: str, hour: int, allocations: Mapping[str, Decimal]) -> Frozen:
        total = allocations.get("", Decimal(0))
        if total <= 0:
            return Frozen(payload=None, sent={}, remainder=dict(allocations))
        sent = min(total, limit)
        rest = {"": total - sent} if total > sent else {}
        return Frozen(payload=json.dumps({"q": str(sent)}), sent={"": sent}, remainder=rest)

    return build_capped


def totals(store: UsageStore) -> dict[tuple[str, int, str], Decimal]:
    """Sent quantity per (stream, hour, tags) plus what is still open or frozen."""
    out: dict[tuple[str, int, str], Decimal] = {}
    for record in store.records():
        for tags, quantity in record.allocations.items():
            if record.state in ("sent", "frozen", "held"):
                key = (record.stream, record.hour, tags)
                out[key] = out.get(key, Decimal(0)) + quantity
    return out


def test_add_then_freeze_makes_one_record_per_stream_and_hour(store: UsageStore) -> None:
    """Accumulated usage of a closed hour becomes one frozen record per stream with exact sums."""
    store.add([Usage("a", H0, Decimal(2)), Usage("a", H0, Decimal(3), "k=v")])
    store.add([Usage("a", H0, Decimal(1)), Usage("b", H0, Decimal("0.5"))])
    store.add([Usage("a", H1, Decimal(7))])
    created = store.freeze(before_hour=H1, open_hour=H1, build=build)
    by_stream = {record.stream: record for record in created}
    assert set(by_stream) == {"a", "b"}
    assert by_stream["a"].allocations == {"": Decimal(3), "k=v": Decimal(3)}
    assert json.loads(by_stream["a"].payload)["total"] == "6"
    assert by_stream["b"].allocations == {"": Decimal("0.5")}
    assert all(record.state == "frozen" and record.hour == H0 for record in created)
    backlog = store.backlog()
    assert [(e.stream, e.hour, e.state, e.quantity) for e in backlog] == [
        ("a", H0, "frozen", Decimal(6)),
        ("b", H0, "frozen", Decimal("0.5")),
        ("a", H1, "open", Decimal(7)),
    ]


def test_decimal_quantities_sum_exactly(store: UsageStore) -> None:
    """Ten additions of 0.1 sum to exactly 1 (no binary floating point anywhere)."""
    for _ in range(10):
        store.add([Usage("a", H0, Decimal("0.1"))])
    (record,) = store.freeze(before_hour=H1, open_hour=H1, build=build)
    assert record.allocations == {"": Decimal(1)}


def test_add_is_all_or_nothing(store: UsageStore) -> None:
    """When one item of a batch cannot be stored, none of the batch is kept."""
    bad = Usage(cast("str", None), H0, Decimal(1))
    with pytest.raises(Exception):  # noqa: B017, PT011 (each backend raises its own integrity error)
        store.add([Usage("a", H0, Decimal(1)), bad])
    assert store.backlog() == []


def test_late_usage_for_a_frozen_hour_is_carried_not_merged(store: UsageStore) -> None:
    """Usage arriving for an hour already frozen goes to the open hour; the record stays as it was."""
    store.add([Usage("a", H0, Decimal(5))])
    (record,) = store.freeze(before_hour=H1, open_hour=H1, build=build)
    store.add([Usage("a", H0, Decimal(2), "t=1")])
    assert store.freeze(before_hour=H1, open_hour=H2, build=build) == []
    (again,) = store.records()
    assert again.payload == record.payload
    assert again.allocations == {"": Decimal(5)}
    open_usage = [(e.hour, e.quantity) for e in store.backlog() if e.state == "open"]
    assert open_usage == [(H2, Decimal(2))]


def test_remainder_and_payloadless_hours_are_carried(store: UsageStore) -> None:
    """What the builder cannot send (above a maximum, or nothing) moves to the open hour, exactly."""
    store.add([Usage("a", H0, Decimal(25))])
    (record,) = store.freeze(before_hour=H1, open_hour=H1, build=capped(Decimal(10)))
    assert record.allocations == {"": Decimal(10)}
    (record2,) = store.freeze(before_hour=H2, open_hour=H2, build=capped(Decimal(10)))
    assert (record2.hour, record2.allocations) == (H1, {"": Decimal(10)})
    (record3,) = store.freeze(before_hour=H3, open_hour=H3, build=capped(Decimal(10)))
    assert (record3.hour, record3.allocations) == (H2, {"": Decimal(5)})
    assert store.freeze(before_hour=H3 + HOUR, open_hour=H3 + HOUR, build=capped(Decimal(10))) == []
    assert [e for e in store.backlog() if e.state == "open"] == []


def test_claims_are_exclusive_until_the_lease_expires(store: UsageStore) -> None:
    """Two senders never hold the same record; an expired lease lets another sender take it."""
    store.add([Usage("a", H0, Decimal(1)), Usage("b", H1, Decimal(1))])
    store.freeze(before_hour=H2, open_hour=H2, build=build)
    first = store.claim(owner="s1", limit=1, lease_seconds=600)
    assert [(r.stream, r.hour, r.attempts) for r in first] == [("a", H0, 1)]
    second = store.claim(owner="s2", limit=10, lease_seconds=0)
    assert [r.stream for r in second] == ["b"]
    third = store.claim(owner="s3", limit=10, lease_seconds=600)
    assert [(r.stream, r.attempts) for r in third] == [("b", 2)]
    with pytest.raises(LeaseLostError):
        store.mark_sent(third[0].id, owner="s1", detail="x")


def test_transitions_sent_held_carried(store: UsageStore) -> None:
    """Sent records leave the backlog; held ones stay in it; carried ones move usage to a later hour."""
    store.add(
        [Usage("a", H0, Decimal(1)), Usage("b", H0, Decimal(2), "x=1"), Usage("c", H0, Decimal(3))]
    )
    store.freeze(before_hour=H1, open_hour=H1, build=build)
    records = {r.stream: r for r in store.claim(owner="s", limit=10, lease_seconds=600)}
    store.mark_sent(records["a"].id, owner="s", detail="rid-1")
    store.mark_sent(records["a"].id, owner="other", detail="rid-1")  # an identical repeat: no-op
    store.carry(records["b"].id, owner="s", to_hour=H2, reason="too late")
    store.hold(records["c"].id, owner="s", reason="not subscribed")
    with pytest.raises(LeaseLostError):
        store.hold(records["b"].id, owner="s", reason="again")
    states = {r.stream: (r.state, r.detail) for r in store.records()}
    assert states == {
        "a": ("sent", "rid-1"),
        "b": ("carried", "too late"),
        "c": ("held", "not subscribed"),
    }
    backlog = [(e.stream, e.hour, e.state, e.quantity) for e in store.backlog()]
    assert backlog == [("c", H0, "held", Decimal(3)), ("b", H2, "open", Decimal(2))]
    (carried,) = store.freeze(before_hour=H3, open_hour=H3, build=build)
    assert (carried.stream, carried.hour, carried.allocations) == ("b", H2, {"x=1": Decimal(2)})


def test_release_lets_another_sender_claim(store: UsageStore) -> None:
    """A released lease (a retryable failure) is free for the next claim at once."""
    store.add([Usage("a", H0, Decimal(1))])
    store.freeze(before_hour=H1, open_hour=H1, build=build)
    (record,) = store.claim(owner="s1", limit=1, lease_seconds=600)
    assert store.claim(owner="s2", limit=1, lease_seconds=600) == []
    store.release(record.id, owner="s1")
    (again,) = store.claim(owner="s2", limit=1, lease_seconds=600)
    assert (again.id, again.payload) == (record.id, record.payload)


def test_ensure_record_is_idempotent_and_its_hour_is_carried(store: UsageStore) -> None:
    """A directly inserted record is returned unchanged on repeat; later usage of its hour is carried."""
    first = store.ensure_record("a", H0, allocations={"": Decimal(0)}, payload='{"n": 1}')
    again = store.ensure_record("a", H0, allocations={"": Decimal(9)}, payload='{"n": 2}')
    assert again == first
    assert first.payload == '{"n": 1}'
    assert store.claim_record(first.id, owner="gate", lease_seconds=600)
    assert not store.claim_record(first.id, owner="other", lease_seconds=600)
    store.mark_sent(first.id, owner="gate", detail="rid")
    assert not store.claim_record(first.id, owner="gate", lease_seconds=600)
    store.add([Usage("a", H0, Decimal(4))])
    assert store.freeze(before_hour=H1, open_hour=H1, build=build) == []
    assert [(e.hour, e.quantity) for e in store.backlog()] == [(H1, Decimal(4))]


def test_usage_survives_reopening(store_url: str, store: UsageStore) -> None:
    """What one store object added and froze, another opened later on the same URL sees."""
    store.add([Usage("a", H0, Decimal(3))])
    store.freeze(before_hour=H1, open_hour=H1, build=build)
    store.add([Usage("a", H1, Decimal(4))])
    store.close()
    reopened = open_store(store_url)
    try:
        assert [(e.hour, e.state, e.quantity) for e in reopened.backlog()] == [
            (H0, "frozen", Decimal(3)),
            (H1, "open", Decimal(4)),
        ]
    finally:
        reopened.close()


def _add_then_die(url: str, ready: ProcessEvent) -> None:
    store = open_store(url)
    store.add([Usage("a", H0, Decimal(1))])
    ready.set()
    threading.Event().wait(60)  # killed here, without close()


def test_add_is_durable_when_it_returns_even_under_kill_9(store_url: str) -> None:
    """A process killed with SIGKILL right after ``add`` returned loses nothing."""
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    child = context.Process(target=_add_then_die, args=(store_url, ready))
    child.start()
    assert ready.wait(60)
    assert child.pid is not None
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    store = open_store(store_url)
    try:
        assert [(e.hour, e.quantity) for e in store.backlog()] == [(H0, Decimal(1))]
    finally:
        store.close()


def _add_many(url: str, worker: int, count: int) -> None:
    store = open_store(url)
    try:
        for i in range(count):
            store.add([Usage(f"s{i % 3}", H0, Decimal(1), f"w={worker % 2}")])
    finally:
        store.close()


def test_concurrent_processes_and_threads_sum_exactly(store_url: str, store: UsageStore) -> None:
    """Processes (one forked after the parent used the store) and threads lose nothing at once."""
    store.add([Usage("s0", H0, Decimal(0), "w=0")])  # used before fork: the child must reopen
    fork, spawn = multiprocessing.get_context("fork"), multiprocessing.get_context("spawn")
    processes = [fork.Process(target=_add_many, args=(store_url, 0, 300))] + [
        spawn.Process(target=_add_many, args=(store_url, i, 300)) for i in range(1, 4)
    ]
    for process in processes:
        process.start()

    def add_from_thread(worker: int) -> None:
        for i in range(300):
            store.add([Usage(f"s{i % 3}", H0, Decimal(1), f"w={worker % 2}")])

    threads = [threading.Thread(target=add_from_thread, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for process in processes:
        process.join()
        assert process.exitcode == 0
    created = store.freeze(before_hour=H1, open_hour=H1, build=build)
    assert sum(sum(r.allocations.values()) for r in created) == 8 * 300
    assert {r.stream: sum(r.allocations.values()) for r in created} == {
        "s0": 800, "s1": 800, "s2": 800,
    }  # fmt: skip
    assert totals(store)[("s0", H0, "w=0")] == 400

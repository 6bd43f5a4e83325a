"""UsageReporter and its sender, black-box against the emulator over loopback (both stores)."""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
from decimal import Decimal
from typing import Any

import pytest
from tests.saas.usage_helpers import (
    Key,
    accepted_totals,
    batch_bodies,
    customer_name,
    fast_retries,
    legacy_customer,
    license_customer,
    previous_hour,
)

from marketplace_entitlement import HeldRecord, SaasCustomer, UsageReporter
from marketplace_entitlement.emulator import Emulator
from marketplace_entitlement.saas._status import usage_status
from marketplace_entitlement.store import HOUR, hour_of


def reporter(url: str, client: Any, **options: Any) -> UsageReporter:
    """A reporter on ``url`` sending with ``client`` (no environment needed)."""
    options.setdefault("retry_delays", fast_retries)
    return UsageReporter(url, client=client, environ={}, **options)


def test_concurrent_threads_send_exact_totals(
    usage_store_url: str, saas_emulator: Emulator, saas_client: Any
) -> None:
    """8 threads report int and Decimal usage; every customer/dimension/hour arrives once, exact."""
    customers = [license_customer(saas_emulator, f"10000000000{i}") for i in range(2)]
    customers.append(legacy_customer(saas_emulator))
    hour = previous_hour()
    expected: dict[Key, Decimal] = {}
    lock = threading.Lock()

    def work(worker: int, usage: UsageReporter) -> None:
        for i in range(60):
            customer = customers[(worker + i) % 3]
            dimension, quantity = ("gb", Decimal("0.01")) if i % 2 else ("api_calls", Decimal(2))
            usage.report(customer, dimension, quantity, timestamp=hour + i)
            key = (customer_name(customer), dimension, hour)
            with lock:
                expected[key] = expected.get(key, Decimal(0)) + quantity

    with reporter(usage_store_url, saas_client) as usage:
        threads = [threading.Thread(target=work, args=(n, usage)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        result = usage.send_now()
        assert (result.sent, result.retry, result.carried, result.held) == (6, 0, 0, 0)
        assert usage.backlog() == []
    assert accepted_totals(saas_emulator) == expected
    records = [r for body in batch_bodies(saas_emulator) for r in body["UsageRecords"]]
    assert {r.get("QuantityAsDecimal") for r in records if r["Dimension"] == "gb"} == {"0.8"}


def _report_from_process(url: str, customer: dict[str, Any], hour: int, count: int) -> None:
    usage = UsageReporter(url, environ={})
    try:
        for i in range(count):
            usage.report(SaasCustomer(**customer), "api_calls", 1 + i % 3, timestamp=hour + i)
    finally:
        usage.close()


def test_concurrent_processes_send_exact_totals(
    usage_store_url: str, saas_emulator: Emulator, saas_client: Any
) -> None:
    """Three processes report into one store; the sent total is the sum of all their reports."""
    customer = license_customer(saas_emulator)
    hour = previous_hour()
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(
            target=_report_from_process, args=(usage_store_url, customer.to_json(), hour, 150)
        )
        for _ in range(3)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
        assert process.exitcode == 0
    with reporter(usage_store_url, saas_client) as usage:
        assert usage.send_now().sent == 1
    assert accepted_totals(saas_emulator) == {
        (customer_name(customer), "api_calls", hour): Decimal(3 * 50 * (1 + 2 + 3))
    }


def test_both_identifications_go_in_separate_requests(
    sqlite_url: str, saas_emulator: Emulator, saas_client: Any
) -> None:
    """License customers go without ProductCode, legacy ones with it; never in one request."""
    new, old = license_customer(saas_emulator), legacy_customer(saas_emulator)
    hour = previous_hour()
    with reporter(sqlite_url, saas_client) as usage:
        usage.report(new, "api_calls", 3, timestamp=hour)
        usage.report(old, "api_calls", 4, timestamp=hour)
        assert usage.send_now().sent == 2
    bodies = batch_bodies(saas_emulator)
    assert len(bodies) == 2
    by_kind = {("ProductCode" in body): body["UsageRecords"][0] for body in bodies}
    assert by_kind[True]["CustomerIdentifier"] == old.customer_identifier
    assert by_kind[False]["LicenseArn"] == new.license_arn
    assert "CustomerIdentifier" not in by_kind[False]
    assert accepted_totals(saas_emulator) == {
        (customer_name(new), "api_calls", hour): Decimal(3),
        (customer_name(old), "api_calls", hour): Decimal(4),
    }


def test_26_records_and_over_1_mb_are_never_one_request(
    sqlite_url: str, saas_emulator: Emulator, saas_client: Any
) -> None:
    """26 records take two requests; 1.3 MB of tagged records is split below 1 MB; all accepted."""
    hour = previous_hour()
    customers = [license_customer(saas_emulator, f"2000000000{i:02d}") for i in range(26)]
    with reporter(sqlite_url, saas_client) as usage:
        for customer in customers:
            usage.report(customer, "api_calls", 1, timestamp=hour)
        for index, customer in enumerate(customers[:12]):
            for n in range(60):
                tags = {f"k{t}" + "x" * 90: f"{index}-{n}-" + "v" * 240 for t in range(5)}
                usage.report(customer, "storage", 1, timestamp=hour, tags=tags)
        result = usage.send_now()
    assert (result.sent, result.retry) == (38, 0)
    sizes = [len(json.dumps(body)) for body in batch_bodies(saas_emulator)]
    counts = [len(body["UsageRecords"]) for body in batch_bodies(saas_emulator)]
    assert sum(sizes) > 1_300_000
    assert max(sizes) < 1_000_000
    assert max(counts) <= 25
    assert all(r.error_code is None for r in saas_emulator.requests("BatchMeterUsage"))
    assert len(accepted_totals(saas_emulator)) == 38


def test_duplicate_record_is_carried_to_the_open_hour(
    usage_store_url: str, saas_emulator: Emulator, saas_client: Any
) -> None:
    """An hour already holding another quantity answers DuplicateRecord: the usage moves on."""
    customer = license_customer(saas_emulator)
    hour = previous_hour()
    saas_client.batch_meter_usage(
        UsageRecords=[
            {"Timestamp": hour, **customer.identity(), "Dimension": "api_calls", "Quantity": 5}
        ]
    )
    with reporter(usage_store_url, saas_client) as usage:
        usage.report(customer, "api_calls", 7, timestamp=hour)
        result = usage.send_now()
        assert (result.sent, result.carried) == (0, 1)
        status = usage_status(usage.store)
        open_hour = hour_of(time.time())
        assert [(e.hour, e.state, e.quantity) for e in usage.backlog()] == [
            (open_hour, "open", Decimal(7))
        ]
    assert status["carried"][0]["reason"].startswith("DuplicateRecord")
    assert status["carried"][0]["quantity"] == "7"
    assert accepted_totals(saas_emulator) == {
        (customer_name(customer), "api_calls", hour): Decimal(5)
    }


def test_customer_not_subscribed_is_held_and_surfaced(
    sqlite_url: str, saas_emulator: Emulator, saas_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """An unsubscribed customer's record is held: a log event, the callback, status; not resent."""
    made = saas_emulator.create_customer("saas-prod", subscribed=False)
    gone = SaasCustomer(
        "saas-prod", aws_account_id=made.aws_account_id, license_arn=made.license_arn
    )
    held: list[HeldRecord] = []
    hour = previous_hour()
    with reporter(sqlite_url, saas_client, on_held=held.append) as usage:
        usage.report(gone, "api_calls", 2, timestamp=hour)
        assert usage.send_now().held == 1
        assert usage.send_now().calls == 0
        status = usage_status(usage.store)
    assert [(h.dimension, h.hour, h.reason) for h in held] == [
        ("api_calls", hour, "CustomerNotSubscribed")
    ]
    assert status["held"][0]["reason"] == "CustomerNotSubscribed"
    assert any(getattr(r, "event", "") == "saas.usage.held" for r in caplog.records)
    assert len(saas_emulator.requests("BatchMeterUsage")) == 1


def test_unprocessed_records_and_throttling_storms(
    usage_store_url: str, saas_emulator: Emulator, saas_client: Any
) -> None:
    """Half the calls throttled, half the answers unprocessed: every record lands exactly once."""
    customers = [license_customer(saas_emulator, f"30000000{i:04d}") for i in range(60)]
    hour = previous_hour()
    saas_emulator.inject_fault("BatchMeterUsage", "unprocessed", probability=0.5, seed=7)
    saas_emulator.inject_fault(
        "BatchMeterUsage", "error", error="ThrottlingException", probability=0.5, seed=8
    )
    saas_emulator.inject_fault(
        "BatchMeterUsage", "error", error="InternalServiceErrorException", probability=0.2, seed=9
    )
    expected = {}
    with reporter(usage_store_url, saas_client) as usage:
        for index, customer in enumerate(customers):
            usage.report(customer, "api_calls", index + 1, timestamp=hour)
            expected[(customer_name(customer), "api_calls", hour)] = Decimal(index + 1)
        rounds = 0
        while usage.backlog() and rounds < 100:
            usage.send_now()
            rounds += 1
        assert usage.backlog() == []
    assert rounds > 1  # the storm did leave records for later rounds
    codes = {r.error_code for r in saas_emulator.requests("BatchMeterUsage")}
    assert {"ThrottlingException", "InternalServiceErrorException"} <= codes
    assert accepted_totals(saas_emulator) == expected


def test_an_outage_longer_than_the_window_carries_the_usage(
    sqlite_url: str, saas_emulator: Emulator, saas_client: Any
) -> None:
    """Records unsent for 24 hours are carried to the open hour, not sent late nor dropped."""
    customer = license_customer(saas_emulator)
    hour = previous_hour()
    saas_emulator.inject_fault("BatchMeterUsage", "error", error="InternalServiceErrorException")
    with reporter(sqlite_url, saas_client, retry_timeout=0.5) as usage:
        usage.report(customer, "api_calls", 9, timestamp=hour)
        assert usage.send_now().retry == 1
    calls = len(saas_emulator.requests("BatchMeterUsage"))
    saas_emulator.clear_faults()
    day_later = time.time() + 25 * HOUR
    with reporter(sqlite_url, saas_client, clock=lambda: day_later) as usage:
        result = usage.send_now()
        assert (result.carried, result.calls) == (1, 0)
        assert [(e.hour, e.quantity) for e in usage.backlog()] == [(hour_of(day_later), Decimal(9))]
    assert len(saas_emulator.requests("BatchMeterUsage")) == calls
    assert accepted_totals(saas_emulator) == {}


def test_reports_are_checked_before_they_are_stored(
    sqlite_url: str, saas_emulator: Emulator, saas_client: Any
) -> None:
    """Negative, float, over-precise quantities and bad tags are refused; nothing is kept."""
    customer = license_customer(saas_emulator)
    with reporter(sqlite_url, saas_client) as usage:
        for quantity in (-1, Decimal("0.0000001"), Decimal("NaN")):
            with pytest.raises(ValueError, match="quantity"):
                usage.report(customer, "api_calls", quantity)
        with pytest.raises(TypeError):
            usage.report(customer, "api_calls", 1.5)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="tags"):
            usage.report(customer, "api_calls", 1, tags={str(i): "v" for i in range(6)})
        assert usage.backlog() == []


def test_the_reporter_thread_sends_in_the_background(
    sqlite_url: str, saas_emulator: Emulator, saas_client: Any
) -> None:
    """start() runs the sender thread: a closed hour's usage arrives without send_now; stop() ends it."""
    customer = license_customer(saas_emulator)
    hour = previous_hour()
    usage = reporter(sqlite_url, saas_client, send_interval=0.05)
    try:
        usage.report(customer, "api_calls", 4, timestamp=hour)
        usage.start()
        deadline = time.monotonic() + 30
        while not saas_emulator.batch_metered() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        usage.close()
    assert not any(t.name == "marketplace-usage-sender" for t in threading.enumerate())
    assert accepted_totals(saas_emulator) == {
        (customer_name(customer), "api_calls", hour): Decimal(4)
    }


def test_one_bad_record_is_narrowed_down_and_held(
    sqlite_url: str, saas_emulator: Emulator, saas_client: Any
) -> None:
    """A license the service refuses fails its whole request: the request is split, only it held."""
    good = [license_customer(saas_emulator, f"50000000{i:04d}") for i in range(9)]
    stranger = SaasCustomer(
        "saas-prod",
        aws_account_id="999999999999",
        license_arn="arn:aws:license-manager::999999999999:license:l-unknown",
    )
    hour = previous_hour()
    held: list[HeldRecord] = []
    with reporter(sqlite_url, saas_client, on_held=held.append) as usage:
        for customer in [*good[:4], stranger, *good[4:]]:
            usage.report(customer, "api_calls", 2, timestamp=hour)
        result = usage.send_now()
    assert (result.sent, result.held) == (9, 1)
    assert [h.reason.split(":")[0] for h in held] == ["InvalidLicenseException"]
    assert len(accepted_totals(saas_emulator)) == 9


def test_a_refusal_of_every_request_frees_the_records_for_another_sender(
    sqlite_url: str, saas_emulator: Emulator, saas_client: Any
) -> None:
    """DisabledApiException ends the round with an error; another sender sends at once."""
    from marketplace_entitlement import ServiceConfigurationError  # noqa: PLC0415

    customer = license_customer(saas_emulator)
    saas_emulator.set_disabled_operations(["BatchMeterUsage"])
    with reporter(sqlite_url, saas_client) as first:
        first.report(customer, "api_calls", 6, timestamp=previous_hour())
        with pytest.raises(ServiceConfigurationError) as refused:
            first.send_now()
    assert refused.value.aws_error_code == "DisabledApiException"
    saas_emulator.set_disabled_operations([])
    with reporter(sqlite_url, saas_client) as second:
        assert second.send_now().sent == 1


def test_a_frozen_record_is_resent_byte_identically_across_restarts(
    sqlite_url: str, saas_emulator: Emulator, saas_client: Any
) -> None:
    """Unanswered attempts and a restart resend the same record; late usage is carried, not merged."""
    customer = license_customer(saas_emulator)
    hour = previous_hour()
    saas_emulator.inject_fault("BatchMeterUsage", "error", error="InternalServiceErrorException")
    with reporter(sqlite_url, saas_client, retry_timeout=0.3) as usage:
        usage.report(customer, "api_calls", 4, timestamp=hour)
        usage.report(customer, "gb", Decimal("0.5"), timestamp=hour, tags={"team": "a"})
        assert usage.send_now().retry == 2
    saas_emulator.clear_faults()
    with reporter(sqlite_url, saas_client) as restarted:
        restarted.report(customer, "api_calls", 100, timestamp=hour + 5)  # late for a frozen hour
        assert restarted.send_now().sent == 2
    sent = [
        sorted(json.dumps(r, sort_keys=True) for r in body["UsageRecords"])
        for body in batch_bodies(saas_emulator)
    ]
    assert len(sent) >= 3
    assert all(records == sent[0] for records in sent)
    assert accepted_totals(saas_emulator)[(customer_name(customer), "api_calls", hour)] == 4


def test_stop_interrupts_a_sender_waiting_out_throttling(
    sqlite_url: str, saas_emulator: Emulator, saas_client: Any
) -> None:
    """A sender in the middle of backing off (throttled for minutes) stops at once when asked."""
    customer = license_customer(saas_emulator)
    saas_emulator.inject_fault("BatchMeterUsage", "error", error="ThrottlingException")
    usage = UsageReporter(sqlite_url, client=saas_client, environ={}, send_interval=0.05)
    usage.report(customer, "api_calls", 1, timestamp=previous_hour())
    usage.start()
    while not saas_emulator.requests("BatchMeterUsage"):
        time.sleep(0.02)
    (thread,) = [t for t in threading.enumerate() if t.name == "marketplace-usage-sender"]
    usage.stop(timeout=30)  # the backoff waits 2.5 s and more, the retries last 2 minutes
    assert not thread.is_alive()
    assert [e.state for e in usage.backlog()] == ["frozen"]  # released, for the next sender
    usage.close()

"""MeterUsage: the once-per-hour rule, idempotency, bounds, allocations, dimensions, DryRun."""

from __future__ import annotations

import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from marketplace_entitlement.emulator import Emulator
from marketplace_entitlement.emulator._model import has_member

HOUR = 3600


def hour_start() -> float:
    """The start of the current hour (never in the future, always within the 6-hour window)."""
    now = time.time()
    return now - now % HOUR


def code_of(excinfo: pytest.ExceptionInfo[ClientError]) -> str:
    """The error code botocore saw."""
    return str(excinfo.value.response["Error"]["Code"])


def meter(client: Any, **overrides: Any) -> Any:
    """Call MeterUsage with sensible defaults."""
    request: dict[str, Any] = {
        "ProductCode": "prod",
        "Timestamp": hour_start(),
        "UsageDimension": "users",
        "UsageQuantity": 5,
    }
    request.update(overrides)
    return client.meter_usage(**{k: v for k, v in request.items() if v is not None})


def test_a_record_gets_a_metering_record_id(emulator: Emulator, client: Any) -> None:
    """A valid record is accepted and answered with a MeteringRecordId."""
    answer = meter(client)
    assert answer["MeteringRecordId"]
    assert emulator.requests("MeterUsage")[0].error_code is None


def test_identical_record_in_the_same_hour_is_idempotent(client: Any) -> None:
    """The same quantity for the same dimension and hour answers the same MeteringRecordId."""
    start = hour_start()
    first = meter(client, Timestamp=start)
    second = meter(client, Timestamp=start + (time.time() - start) / 2)
    assert first["MeteringRecordId"] == second["MeteringRecordId"]


def test_another_quantity_in_the_same_hour_is_a_duplicate(client: Any) -> None:
    """A different quantity for the same dimension and hour gets DuplicateRequestException."""
    meter(client, UsageQuantity=5)
    with pytest.raises(ClientError) as excinfo:
        meter(client, UsageQuantity=6)
    assert code_of(excinfo) == "DuplicateRequestException"


def test_the_hourly_rule_is_per_dimension_and_per_caller(
    emulator: Emulator, make_client: Any
) -> None:
    """Another dimension, or another access key (another task), is a separate record."""
    client = make_client(emulator)
    first = meter(client, UsageQuantity=5)
    other_dimension = meter(client, UsageDimension="storage", UsageQuantity=7)
    other_task = meter(make_client(emulator, access_key_id="AKIDOTHER"), UsageQuantity=9)
    ids = {
        first["MeteringRecordId"],
        other_dimension["MeteringRecordId"],
        other_task["MeteringRecordId"],
    }
    assert len(ids) == 3


def test_previous_hour_is_a_separate_record(client: Any) -> None:
    """Timestamps are rounded down to the hour: the previous hour takes its own record."""
    this_hour = meter(client, Timestamp=hour_start(), UsageQuantity=1)
    last_hour = meter(client, Timestamp=hour_start() - HOUR, UsageQuantity=2)
    assert this_hour["MeteringRecordId"] != last_hour["MeteringRecordId"]


@pytest.mark.parametrize("offset", [-6 * HOUR - 60, 15 * 60])
def test_timestamps_out_of_bounds_are_refused(client: Any, offset: float) -> None:
    """More than 6 hours back, or more than a few minutes ahead: TimestampOutOfBoundsException."""
    with pytest.raises(ClientError) as excinfo:
        meter(client, Timestamp=time.time() + offset)
    assert code_of(excinfo) == "TimestampOutOfBoundsException"


def test_allocations_must_sum_to_the_quantity(client: Any) -> None:
    """UsageAllocations summing to another quantity get InvalidUsageAllocationsException."""
    allocations = [
        {"AllocatedUsageQuantity": 2, "Tags": [{"Key": "team", "Value": "a"}]},
        {"AllocatedUsageQuantity": 2, "Tags": [{"Key": "team", "Value": "b"}]},
    ]
    with pytest.raises(ClientError) as excinfo:
        meter(client, UsageQuantity=5, UsageAllocations=allocations)
    assert code_of(excinfo) == "InvalidUsageAllocationsException"
    assert meter(client, UsageQuantity=4, UsageAllocations=allocations)["MeteringRecordId"]


def test_duplicate_tag_keys_are_invalid(client: Any) -> None:
    """An allocation with the same tag key twice gets InvalidTagException."""
    tags = [{"Key": "team", "Value": "a"}, {"Key": "team", "Value": "b"}]
    with pytest.raises(ClientError) as excinfo:
        meter(
            client, UsageQuantity=1, UsageAllocations=[{"AllocatedUsageQuantity": 1, "Tags": tags}]
        )
    assert code_of(excinfo) == "InvalidTagException"


def test_unknown_dimension_of_a_product_with_dimensions(
    make_emulator: Any, make_client: Any
) -> None:
    """A product configured with dimensions refuses others with InvalidUsageDimensionException."""
    emulator = make_emulator(products={"prod": "entitled"}, dimensions={"prod": ["users"]})
    client = make_client(emulator)
    assert meter(client, UsageDimension="users")["MeteringRecordId"]
    with pytest.raises(ClientError) as excinfo:
        meter(client, UsageDimension="gigabytes")
    assert code_of(excinfo) == "InvalidUsageDimensionException"


def test_unknown_product_and_not_entitled_customer(make_emulator: Any, make_client: Any) -> None:
    """Unknown and invalid codes: InvalidProductCodeException; not_entitled: CustomerNotEntitled."""
    emulator = make_emulator(
        products={"prod": "entitled", "gone": "not_entitled", "bad": "invalid"}
    )
    client = make_client(emulator)
    for code in ("nope", "bad"):
        with pytest.raises(ClientError) as excinfo:
            meter(client, ProductCode=code)
        assert code_of(excinfo) == "InvalidProductCodeException"
    with pytest.raises(ClientError) as excinfo:
        meter(client, ProductCode="gone")
    assert code_of(excinfo) == "CustomerNotEntitledException"


def test_other_endpoint_region_is_refused(make_emulator: Any, make_client: Any) -> None:
    """With a region set, MeterUsage signed for another gets InvalidEndpointRegionException."""
    emulator = make_emulator(region="us-west-2")
    with pytest.raises(ClientError) as excinfo:
        meter(make_client(emulator, region="us-east-1"))
    assert code_of(excinfo) == "InvalidEndpointRegionException"


def test_dry_run_answers_dry_run_operation(emulator: Emulator, client: Any) -> None:
    """DryRun: true answers the DryRunOperation error (HTTP 400) and records nothing."""
    with pytest.raises(ClientError) as excinfo:
        meter(client, DryRun=True)
    assert code_of(excinfo) == "DryRunOperation"
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert meter(client, UsageQuantity=99)["MeteringRecordId"]


def test_reused_client_token_with_other_parameters_conflicts(client: Any) -> None:
    """The same ClientToken for a different request gets IdempotencyConflictException."""
    first = meter(client, ClientToken="token-1", UsageQuantity=3)
    again = meter(client, ClientToken="token-1", UsageQuantity=3)
    assert first["MeteringRecordId"] == again["MeteringRecordId"]
    with pytest.raises(ClientError) as excinfo:
        meter(client, ClientToken="token-1", UsageDimension="other", UsageQuantity=3)
    assert code_of(excinfo) == "IdempotencyConflictException"


def test_internal_error_and_throttling(emulator: Emulator, client: Any) -> None:
    """Injected InternalServiceErrorException and a 1/s limit reach the caller as such."""
    emulator.inject_fault("MeterUsage", "error", error="InternalServiceErrorException", count=1)
    with pytest.raises(ClientError) as excinfo:
        meter(client)
    assert code_of(excinfo) == "InternalServiceErrorException"
    emulator.set_rate_limit("MeterUsage", 1)
    meter(client)
    with pytest.raises(ClientError) as excinfo:
        meter(client)
    assert code_of(excinfo) == "ThrottlingException"


@pytest.mark.skipif(
    not has_member("MeterUsageRequest", "UsageQuantityAsDecimal"),
    reason="the installed botocore model has no decimal quantities",
)
def test_decimal_quantities_compare_by_value(client: Any) -> None:
    """UsageQuantityAsDecimal "5.0" repeats UsageQuantity 5 idempotently; both is invalid."""
    first = meter(client, UsageQuantity=5)
    second = meter(client, UsageQuantity=None, UsageQuantityAsDecimal="5.0")
    assert first["MeteringRecordId"] == second["MeteringRecordId"]
    with pytest.raises(ClientError) as excinfo:
        meter(client, UsageQuantityAsDecimal="5")
    assert code_of(excinfo) == "ValidationException"


def test_every_modelled_error_is_producible() -> None:
    """The errors exercised here are exactly those the installed model lists for MeterUsage."""
    from marketplace_entitlement.emulator._model import load_service_model  # noqa: PLC0415

    listed = {e["shape"] for e in load_service_model()["operations"]["MeterUsage"]["errors"]}
    produced = {
        "InternalServiceErrorException",
        "InvalidProductCodeException",
        "InvalidUsageDimensionException",
        "InvalidTagException",
        "InvalidUsageAllocationsException",
        "InvalidEndpointRegionException",
        "TimestampOutOfBoundsException",
        "DuplicateRequestException",
        "IdempotencyConflictException",
        "ThrottlingException",
        "CustomerNotEntitledException",
    }
    assert listed <= produced

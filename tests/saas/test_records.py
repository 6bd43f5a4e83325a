"""The frozen UsageRecord a stream's hour becomes, and how records are packed into requests."""

from __future__ import annotations

import json
from decimal import Decimal

from marketplace_entitlement import SaasCustomer
from marketplace_entitlement.saas._records import (
    MAX_QUANTITY,
    build_record,
    pack,
    stream_key,
    tags_key,
)
from marketplace_entitlement.store import FrozenRecord

HOUR = 1_800_000_000 // 3600 * 3600
LICENSED = SaasCustomer("p", aws_account_id="1", license_arn="arn:aws:lm::1:license:l-1")
LEGACY = SaasCustomer("p", customer_identifier="c-1")


def test_whole_usage_is_quantity_and_tags_are_allocations() -> None:
    """An integral total goes as Quantity; tagged usage as allocations summing to it."""
    frozen = build_record(
        stream_key(LICENSED, "api"), HOUR, {"": Decimal(2), tags_key({"team": "a"}): Decimal(3)}
    )
    assert frozen.payload is not None
    record = json.loads(frozen.payload)
    assert list(record) == ["Timestamp", "CustomerAWSAccountId", "LicenseArn", "Dimension",
                            "Quantity", "UsageAllocations"]  # fmt: skip
    assert record["Quantity"] == 5
    assert record["UsageAllocations"] == [
        {"AllocatedUsageQuantity": 2},
        {"AllocatedUsageQuantity": 3, "Tags": [{"Key": "team", "Value": "a"}]},
    ]
    assert frozen.remainder == {}


def test_fractional_usage_is_quantity_as_decimal() -> None:
    """A fractional total goes as QuantityAsDecimal, its allocations as decimal strings too."""
    frozen = build_record(stream_key(LEGACY, "gb"), HOUR, {"": Decimal("1.250000")})
    assert frozen.payload is not None
    record = json.loads(frozen.payload)
    assert record["QuantityAsDecimal"] == "1.25"
    assert record["CustomerIdentifier"] == "c-1"
    assert "Quantity" not in record


def test_usage_above_the_maximum_is_carried() -> None:
    """Beyond Quantity's maximum, the rest is the remainder (carried to the open hour)."""
    frozen = build_record(stream_key(LICENSED, "api"), HOUR, {"": Decimal(MAX_QUANTITY + 10)})
    assert frozen.payload is not None
    assert json.loads(frozen.payload)["Quantity"] == MAX_QUANTITY
    assert frozen.remainder == {"": Decimal(10)}


def test_zero_usage_sends_nothing() -> None:
    """An hour whose total is zero makes no record."""
    frozen = build_record(stream_key(LICENSED, "api"), HOUR, {"": Decimal(0)})
    assert frozen.payload is None


def test_packing_separates_identifications_and_caps_at_25() -> None:
    """30 licensed and 2 legacy records: 25 + 5 licensed requests, one legacy with ProductCode."""
    records = []
    for index in range(32):
        customer = (
            LEGACY
            if index >= 30
            else SaasCustomer(
                "p", aws_account_id=str(index + 1), license_arn=f"arn:aws:lm::1:license:l-{index}"
            )
        )
        stream = stream_key(customer, f"d{index}")
        payload = build_record(stream, HOUR, {"": Decimal(1)}).payload
        assert payload is not None
        records.append(FrozenRecord(index, stream, HOUR, payload, {"": Decimal(1)}, "frozen", 0))
    requests = pack(records)
    assert [(r.identification, len(r.records)) for r in requests] == [
        ("license", 25), ("license", 5), ("legacy", 2)
    ]  # fmt: skip
    assert "ProductCode" not in requests[0].parameters()
    assert requests[2].parameters()["ProductCode"] == "p"

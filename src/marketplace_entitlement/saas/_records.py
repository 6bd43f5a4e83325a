"""BatchMeterUsage records: the store's streams and tags, frozen payloads, and request packing.

A *stream* is one customer's dimension (canonical JSON of the product code, the customer's
identification and the dimension); its hour's usage becomes one ``UsageRecord`` whose JSON is
frozen in the store and sent unchanged on every attempt. Requests are packed from frozen records:
at most 25 records, well under 1 MB, one product (and one identification) per request.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

from marketplace_entitlement.saas._customer import SaasCustomer
from marketplace_entitlement.store import Frozen, FrozenRecord

MAX_RECORDS_PER_REQUEST: Final = 25
# The service refuses requests of 1 MB or more; requests are packed to stay under this many bytes
# of JSON (measured as botocore writes it), which leaves room for the envelope.
MAX_REQUEST_BYTES: Final = 900_000
MAX_RECORD_BYTES: Final = 200_000  # one record's allocations are cut (and carried) beyond this
MAX_QUANTITY: Final = 2_147_483_647  # Quantity (int)
MAX_DECIMAL: Final = Decimal("9999999999.999999")  # QuantityAsDecimal: 10 digits, 6 places
DECIMAL_PLACES: Final = 6
MAX_ALLOCATIONS: Final = 2500
MAX_TAGS: Final = 5
_TAG_PATTERN: Final = re.compile(r"^[a-zA-Z0-9+ -=._:\/@]+$")


@dataclass(frozen=True)
class Stream:
    """What one stream reports for: the customer (product + identification) and dimension."""

    product_code: str
    identity: Mapping[str, str]
    dimension: str

    @property
    def identification(self) -> str:
        """``license`` or ``legacy``: requests never mix the two."""
        return "license" if "LicenseArn" in self.identity else "legacy"

    @property
    def customer_text(self) -> str:
        """A short readable name of the customer (for status and logs)."""
        if self.identification == "license":
            return f"{self.identity['CustomerAWSAccountId']}/{self.identity['LicenseArn']}"
        return f"{self.product_code}/{self.identity['CustomerIdentifier']}"


def stream_key(customer: SaasCustomer, dimension: str) -> str:
    """The store's stream for ``customer``'s ``dimension`` (canonical JSON, stable everywhere)."""
    return json.dumps(
        {"dimension": dimension, "identity": customer.identity(), "product": customer.product_code},
        sort_keys=True,
        separators=(",", ":"),
    )


def parse_stream(text: str) -> Stream:
    """The inverse of ``stream_key``."""
    data = json.loads(text)
    return Stream(str(data["product"]), dict(data["identity"]), str(data["dimension"]))


def tags_key(tags: Mapping[str, str] | None) -> str:
    """Canonical text of one allocation's tags (``""`` untagged); raises ValueError if invalid."""
    if not tags:
        return ""
    if len(tags) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} tags per usage allocation, not {len(tags)}")
    for key, value in tags.items():
        for part, limit in ((key, 100), (value, 256)):
            if not isinstance(part, str) or not 1 <= len(part) <= limit:
                raise ValueError(f"tag {key!r}={value!r}: keys 1-100, values 1-256 characters")
            if not _TAG_PATTERN.fullmatch(part):
                raise ValueError(f"tag {key!r}={value!r} has characters AWS does not accept")
    return json.dumps(sorted(tags.items()), separators=(",", ":"))


def check_quantity(quantity: int | Decimal) -> Decimal:
    """A non-negative integer or Decimal with at most 6 decimal places, as Decimal."""
    if isinstance(quantity, bool) or not isinstance(quantity, (int, Decimal)):
        raise TypeError(f"quantity must be an int or a Decimal, not {type(quantity).__name__}")
    value = Decimal(quantity)
    if not value.is_finite() or value < 0:
        raise ValueError(f"quantity must be a finite, non-negative number, not {quantity}")
    if value != value.quantize(Decimal(1).scaleb(-DECIMAL_PLACES)):
        raise ValueError(f"quantity {quantity} has more than {DECIMAL_PLACES} decimal places")
    return value


def _decimal_text(value: Decimal) -> str:
    text = format(value.quantize(Decimal(1).scaleb(-DECIMAL_PLACES)), "f").rstrip("0").rstrip(".")
    return text or "0"


def build_record(stream_text: str, hour: int, allocations: Mapping[str, Decimal]) -> Frozen:
    """The store's ``PayloadBuilder``: one ``UsageRecord`` for a stream's closed hour.

    Whole quantities go as ``Quantity``, fractional ones as ``QuantityAsDecimal`` (allocations in
    the same type). What does not fit (above the model's maximum, more than 2500 allocations, or
    a record above ``MAX_RECORD_BYTES``) is the remainder, carried to the open hour.
    """
    stream = parse_stream(stream_text)
    positive = {tags: q for tags, q in sorted(allocations.items()) if q > 0}
    as_decimal = any(q != q.to_integral_value() for q in positive.values())
    limit = MAX_DECIMAL if as_decimal else Decimal(MAX_QUANTITY)
    sent: dict[str, Decimal] = {}
    remainder: dict[str, Decimal] = {}
    total = Decimal(0)
    size = 0
    for tags, quantity in positive.items():
        room = min(quantity, limit - total)
        size += len(tags) + 80
        if room <= 0 or len(sent) >= MAX_ALLOCATIONS or size > MAX_RECORD_BYTES:
            remainder[tags] = quantity
            continue
        sent[tags] = room
        total += room
        if room < quantity:
            remainder[tags] = quantity - room
    if total == 0:
        return Frozen(payload=None, sent={}, remainder=remainder)
    record: dict[str, Any] = {"Timestamp": hour, **stream.identity, "Dimension": stream.dimension}
    if as_decimal:
        record["QuantityAsDecimal"] = _decimal_text(total)
    else:
        record["Quantity"] = int(total)
    if set(sent) != {""}:
        record["UsageAllocations"] = [_allocation(tags, q, as_decimal) for tags, q in sent.items()]
    return Frozen(payload=json.dumps(record), sent=sent, remainder=remainder)


def _allocation(tags: str, quantity: Decimal, as_decimal: bool) -> dict[str, Any]:
    allocation: dict[str, Any] = (
        {"AllocatedUsageQuantityAsDecimal": _decimal_text(quantity)}
        if as_decimal
        else {"AllocatedUsageQuantity": int(quantity)}
    )
    if tags:
        allocation["Tags"] = [{"Key": k, "Value": v} for k, v in json.loads(tags)]
    return allocation


@dataclass(frozen=True)
class Request:
    """One BatchMeterUsage call: its product, identification and frozen records."""

    product_code: str
    identification: str
    records: tuple[FrozenRecord, ...]

    def parameters(self) -> dict[str, Any]:
        """Botocore's parameters: each record's frozen JSON, parsed (its member order kept)."""
        params: dict[str, Any] = {"UsageRecords": [json.loads(r.payload) for r in self.records]}
        if self.identification == "legacy":
            params["ProductCode"] = self.product_code
        return params


def pack(records: Iterable[FrozenRecord]) -> list[Request]:
    """Group records by product and identification into requests of <= 25 records, < 1 MB."""
    groups: dict[tuple[str, str], list[FrozenRecord]] = {}
    for record in records:
        stream = parse_stream(record.stream)
        groups.setdefault((stream.product_code, stream.identification), []).append(record)
    requests: list[Request] = []
    envelope = len(json.dumps({"ProductCode": "p" * 255, "UsageRecords": []}))
    for (product, identification), members in groups.items():
        batch: list[FrozenRecord] = []
        size = envelope
        for record in members:
            # botocore writes JSON with ", " and ": " separators: measure it that way.
            record_size = len(json.dumps(json.loads(record.payload))) + 2
            if batch and (
                len(batch) == MAX_RECORDS_PER_REQUEST or size + record_size > MAX_REQUEST_BYTES
            ):
                requests.append(Request(product, identification, tuple(batch)))
                batch, size = [], envelope
            batch.append(record)
            size += record_size
        if batch:
            requests.append(Request(product, identification, tuple(batch)))
    return requests


def result_key(usage_record: Mapping[str, Any]) -> tuple[str, ...]:
    """What identifies a record inside one request's answer: customer, dimension, hour."""
    timestamp: Any = usage_record.get("Timestamp")
    if isinstance(timestamp, datetime):
        timestamp = timestamp.timestamp()
    return (
        str(usage_record.get("CustomerIdentifier") or ""),
        str(usage_record.get("CustomerAWSAccountId") or ""),
        str(usage_record.get("LicenseArn") or ""),
        str(usage_record.get("Dimension") or ""),
        str(int(float(timestamp or 0))),
    )

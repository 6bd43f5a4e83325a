"""What a usage record is and which ones are refused: dimensions, quantities and tags, checked once.

Every way in (``record_usage``, HTTP, StatsD, the ``record`` command) builds its records here, so a
record is refused where it is recorded, with the same message, never an hour later by the service.
Limits come from the botocore model of MeterUsage (dimension pattern and length, tag key and value
patterns, at most 5 tags per allocation, quantities up to 2147483647).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from marketplace_entitlement._errors import ConfigurationError, EntitlementError
from marketplace_entitlement.store import Usage, hour_of

MAX_DIMENSIONS = 24  # per product (AWS Marketplace seller guide)
MAX_TAGS = 5  # per allocation (model: TagList max 5)
MAX_QUANTITY = 2147483647  # model: UsageQuantity max


class UsageRecordError(EntitlementError, ValueError):
    """A usage record was refused (unknown dimension, bad quantity or tags); nothing of it is kept."""


@dataclass(frozen=True)
class _Shape:
    pattern: re.Pattern[str]
    min: int
    max: int


@functools.cache
def _shapes() -> Mapping[str, _Shape]:
    """The string shapes we check, read from botocore's MeterUsage model (once, lazily)."""
    from botocore.loaders import Loader  # noqa: PLC0415  (slow import: only when checking settings)

    model = Loader().load_service_model("meteringmarketplace", "service-2")["shapes"]
    return {
        name: _Shape(re.compile(model[name]["pattern"]), model[name]["min"], model[name]["max"])
        for name in ("UsageDimension", "TagKey", "TagValue")
    }


def _matches(value: str, shape_name: str) -> bool:
    shape = _shapes()[shape_name]
    return shape.min <= len(value) <= shape.max and shape.pattern.fullmatch(value) is not None


def parse_dimensions(value: str, variable: str) -> tuple[str, ...]:
    """Parse ``MARKETPLACE_DIMENSIONS``: 1..24 distinct comma-separated names the model accepts."""
    names = tuple(part.strip() for part in value.split(","))
    if any(not name for name in names):
        raise ConfigurationError(
            f"{variable}={value!r} has an empty dimension name", variable=variable,
            hint="list the dimension API names of your listing, comma-separated: requests,gb_scanned",
        )  # fmt: skip
    if len(names) > MAX_DIMENSIONS:
        raise ConfigurationError(
            f"{variable} names {len(names)} dimensions; a product has at most {MAX_DIMENSIONS}",
            variable=variable,
        )
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigurationError(
            f"{variable} names {', '.join(duplicates)} more than once", variable=variable
        )
    for name in names:
        if not _matches(name, "UsageDimension"):
            raise ConfigurationError(
                f"{variable}: {name!r} is not a valid usage dimension name (1 to 255 characters)",
                variable=variable,
            )
    return names


def canonical_tags(tags: Mapping[str, Any] | None) -> str:
    """Check ``tags`` (<= 5, keys and values as the model allows) and return their canonical text.

    The canonical text is JSON of the sorted pairs (``""`` when untagged), so equal tag sets
    accumulate into one allocation whatever order they came in.
    """
    if not tags:
        return ""
    if not isinstance(tags, Mapping):
        raise UsageRecordError(f"tags must be an object of key/value strings, not {tags!r}")
    if len(tags) > MAX_TAGS:
        raise UsageRecordError(f"a record has at most {MAX_TAGS} tags, not {len(tags)}")
    pairs: list[tuple[str, str]] = []
    for key, value in tags.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise UsageRecordError(f"tag {key!r}: keys and values must be strings")
        if not _matches(key, "TagKey"):
            raise UsageRecordError(
                f"tag key {key!r} is not allowed (1-100 characters of a-z A-Z 0-9 + - = . _ : / @ "
                "and space)"
            )
        if not _matches(value, "TagValue"):
            raise UsageRecordError(
                f"tag value {value!r} of {key!r} is not allowed (1-256 characters of a-z A-Z 0-9 "
                "+ - = . _ : / @ and space)"
            )
        pairs.append((key, value))
    return json.dumps(sorted(pairs), separators=(",", ":"))


def tags_of(canonical: str) -> list[dict[str, str]]:
    """The MeterUsage ``Tags`` list of a canonical tag text."""
    if not canonical:
        return []
    return [{"Key": key, "Value": value} for key, value in json.loads(canonical)]


def check_quantity(quantity: object) -> int:
    """A whole number 0..2147483647 (MeterUsage's UsageQuantity), else UsageRecordError."""
    if isinstance(quantity, bool) or not isinstance(quantity, (int, Decimal, str)):
        raise UsageRecordError(f"quantity must be a whole number, not {quantity!r}")
    try:
        number = Decimal(quantity)
    except ArithmeticError:
        raise UsageRecordError(f"quantity must be a whole number, not {quantity!r}") from None
    if not number.is_finite() or number != number.to_integral_value():
        raise UsageRecordError(f"quantity must be a whole number, not {quantity!r}")
    if not 0 <= number <= MAX_QUANTITY:
        raise UsageRecordError(f"quantity must be between 0 and {MAX_QUANTITY}, not {quantity}")
    return int(number)


class RecordChecker:
    """Builds store items from records, refusing undeclared dimensions and bad quantities or tags."""

    def __init__(self, dimensions: Iterable[str]) -> None:
        self.dimensions = frozenset(dimensions)
        self._listed = ", ".join(sorted(self.dimensions))

    def usage(
        self, dimension: object, quantity: object, tags: Mapping[str, Any] | None, now: float
    ) -> Usage:
        """One store item for the hour holding ``now``."""
        if not isinstance(dimension, str) or dimension not in self.dimensions:
            raise UsageRecordError(
                f"dimension {dimension!r} is not declared; MARKETPLACE_DIMENSIONS lists "
                f"{self._listed}"
            )
        return Usage(
            dimension, hour_of(now), Decimal(check_quantity(quantity)), canonical_tags(tags)
        )

    def from_json(self, record: object, now: float) -> Usage:
        """One store item from a JSON record ``{"dimension": .., "quantity": .., "tags": {..}}``."""
        if not isinstance(record, dict):
            raise UsageRecordError("a record must be a JSON object")
        unknown = sorted(set(record) - {"dimension", "quantity", "tags"})
        if unknown:
            raise UsageRecordError(f"unknown field(s) in a record: {', '.join(unknown)}")
        if "dimension" not in record:
            raise UsageRecordError("a record needs a dimension")
        quantity = record.get("quantity", 1)  # a record without a quantity counts 1
        if isinstance(quantity, bool) or not isinstance(quantity, (int, float)):
            # JSON gives a number as int or float; "5", true, null, [] or {} are not quantities.
            raise UsageRecordError(
                f"quantity must be a JSON number (a whole number), not {json.dumps(quantity)}"
            )
        if isinstance(quantity, float):
            if not quantity.is_integer():
                raise UsageRecordError(f"quantity must be a whole number, not {quantity!r}")
            quantity = int(quantity)
        return self.usage(record["dimension"], quantity, record.get("tags"), now)

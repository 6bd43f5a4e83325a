"""The MeterUsage request of one dimension's hour, fixed (frozen) before it is first sent.

The store calls ``MeterUsageBuilder`` once per dimension and closed hour; the JSON it returns is
kept and sent byte for byte until the service answers, so a crash between sending and recording the
answer only ever repeats an identical request (which the service answers with the same
MeteringRecordId).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from marketplace_entitlement.metering._records import MAX_QUANTITY, tags_of
from marketplace_entitlement.store import HOUR, Frozen

MAX_ALLOCATIONS = 2500  # model: UsageAllocations max


def timestamp_in_hour(hour: int, now: float) -> int:
    """The Timestamp sent for ``hour``: its last second, or ``now`` if the hour is still running.

    Late in the hour leaves the most of the service's 6-hour window for retries, and it is never in
    the future (the startup record and the partial hour sent on SIGTERM are stamped ``now``).
    """
    return min(hour + HOUR - 1, int(now))


def meter_usage_payload(
    product_code: str, dimension: str, timestamp: int, allocations: Mapping[str, Decimal]
) -> str:
    """The request JSON: quantity is the allocations' sum; allocations only when something is tagged."""
    total = sum(allocations.values(), Decimal(0))
    request: dict[str, Any] = {
        # botocore would draw a fresh ClientToken per call (the model marks it an idempotency
        # token); drawn once here and stored, every repeat of the record is identical.
        "ClientToken": str(uuid.uuid4()),
        "ProductCode": product_code,
        "Timestamp": timestamp,
        "UsageDimension": dimension,
        "UsageQuantity": int(total),
    }
    if any(tags for tags in allocations):
        entries: list[dict[str, Any]] = []
        for tags, quantity in sorted(allocations.items()):
            entry: dict[str, Any] = {"AllocatedUsageQuantity": int(quantity)}
            if tags:
                entry["Tags"] = tags_of(tags)
            entries.append(entry)
        request["UsageAllocations"] = entries
    return json.dumps(request, sort_keys=True, separators=(",", ":"))


class MeterUsageBuilder:
    """A ``PayloadBuilder`` for one product, freezing at ``now``.

    What does not fit one request (more than 2500 tag sets, or more than 2147483647 units) is left
    as the remainder, which the store carries into the open hour: never dropped.
    """

    def __init__(self, product_code: str, now: float) -> None:
        self.product_code = product_code
        self.now = now

    def __call__(self, stream: str, hour: int, allocations: Mapping[str, Decimal]) -> Frozen:
        """Decide the request of ``stream`` (a dimension) for ``hour``."""
        sent: dict[str, Decimal] = {}
        remainder: dict[str, Decimal] = {}
        room = Decimal(MAX_QUANTITY)
        for tags, quantity in sorted(allocations.items()):
            if quantity == 0:
                continue  # nothing to allocate (a zero record is made below if all are zero)
            take = min(quantity, room) if len(sent) < MAX_ALLOCATIONS else Decimal(0)
            if take > 0:
                sent[tags] = take
                room -= take
            if quantity > take:
                remainder[tags] = quantity - take
        if not sent and not remainder:
            sent = {"": Decimal(0)}  # the hour ran with no usage: a zero record says so
        if not sent:
            return Frozen(payload=None, sent={}, remainder=remainder)
        timestamp = timestamp_in_hour(hour, self.now)
        payload = meter_usage_payload(self.product_code, stream, timestamp, sent)
        return Frozen(payload=payload, sent=sent, remainder=remainder)

"""``usage status``: the backlog per customer, dimension and hour, and what was carried or held."""

from __future__ import annotations

from typing import Any

from marketplace_entitlement.saas._records import parse_stream
from marketplace_entitlement.store import UsageStore, hour_text


def _entry(stream_text: str, hour: int, quantity: Any, **extra: Any) -> dict[str, Any]:
    stream = parse_stream(stream_text)
    return {
        "customer": stream.customer_text,
        "product_code": stream.product_code,
        "dimension": stream.dimension,
        "hour": hour_text(hour),
        "quantity": str(quantity),
        **extra,
    }


def usage_status(store: UsageStore) -> dict[str, Any]:
    """JSON-ready: ``backlog`` (open, frozen), ``held`` and ``carried``, oldest hour first."""
    backlog = []
    held = []
    for entry in store.backlog():
        item = _entry(entry.stream, entry.hour, entry.quantity, state=entry.state)
        if entry.state == "held":
            held.append({**item, "reason": entry.detail})
        else:
            backlog.append(item)
    carried = [
        _entry(
            record.stream,
            record.hour,
            sum(record.allocations.values()),
            reason=record.detail,
        )
        for record in store.records()
        if record.state == "carried"
    ]
    return {"backlog": backlog, "held": held, "carried": carried}

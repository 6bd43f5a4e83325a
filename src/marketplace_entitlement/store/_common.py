"""What both usage store backends compute the same way; only their SQL differs.

Quantities as canonical text, allocations as JSON, a stored row as a ``FrozenRecord``, the
decisions of ``freeze`` (which stream/hour gets a record, what is carried to the open hour), the
lease check before a record leaves ``frozen``, and the backlog's entries and order.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

from marketplace_entitlement.store._base import (
    BacklogEntry,
    FrozenRecord,
    LeaseLostError,
    PayloadBuilder,
    RecordState,
)

COLUMNS = "id, stream, hour, payload, allocations, state, attempts, detail"
"""The columns ``record`` reads, in its order."""

UsageRow = tuple[str, int, str, Decimal]
"""``(stream, hour, tags, quantity)``: one row of open usage."""


def text(quantity: Decimal) -> str:
    """Canonical text of a quantity: no exponent, no trailing zeros after the point."""
    result = format(quantity, "f")
    if "." in result:
        result = result.rstrip("0").rstrip(".")
    return "0" if result in ("", "-0") else result


def allocations_text(allocations: Mapping[str, Decimal]) -> str:
    """The stored JSON of allocations: tags in order, quantities as canonical text."""
    return json.dumps({tags: text(q) for tags, q in sorted(allocations.items())})


def allocations(stored: str) -> dict[str, Decimal]:
    """The allocations ``allocations_text`` stored."""
    return {tags: Decimal(q) for tags, q in json.loads(stored).items()}


def record(row: Any, *, attempts_delta: int = 0) -> FrozenRecord:
    """A row of ``COLUMNS`` as a record (``attempts_delta``: claims counted after the SELECT)."""
    return FrozenRecord(
        id=row[0], stream=row[1], hour=row[2], payload=row[3], allocations=allocations(row[4]),
        state=row[5], attempts=row[6] + attempts_delta, detail=row[7],
    )  # fmt: skip


def group_usage(
    rows: Iterable[tuple[str, int, str, Any]],
) -> dict[tuple[str, int], dict[str, Decimal]]:
    """Open usage rows ``(stream, hour, tags, quantity)`` as allocations per stream/hour."""
    grouped: dict[tuple[str, int], dict[str, Decimal]] = {}
    for stream, hour, tags, quantity in rows:
        grouped.setdefault((stream, hour), {})[tags] = Decimal(quantity)
    return grouped


def freeze_groups(
    grouped: Mapping[tuple[str, int], Mapping[str, Decimal]],
    *,
    open_hour: int,
    build: PayloadBuilder,
    has_record: Callable[[str, int], bool],
    insert: Callable[[str, int, str, str], int],
) -> tuple[list[FrozenRecord], list[UsageRow]]:
    """``freeze``'s decisions for closed usage, oldest hour first: the records and what to carry.

    A stream/hour that ``has_record`` already is carried whole to ``open_hour``; otherwise
    ``build`` decides, its remainder is carried, and its payload (if any) is stored by
    ``insert(stream, hour, payload, allocations_text) -> id``. The carried rows exclude zeros.
    """
    created: list[FrozenRecord] = []
    carry: list[UsageRow] = []
    for (stream, hour), usage in sorted(grouped.items(), key=lambda item: item[0][::-1]):
        if has_record(stream, hour):
            carry += [(stream, open_hour, t, q) for t, q in usage.items()]
            continue
        decided = build(stream, hour, usage)
        carry += [(stream, open_hour, t, q) for t, q in decided.remainder.items()]
        if decided.payload is None:
            continue
        record_id = insert(stream, hour, decided.payload, allocations_text(decided.sent))
        created.append(
            FrozenRecord(
                id=record_id, stream=stream, hour=hour, payload=decided.payload,
                allocations=dict(decided.sent), state="frozen", attempts=0,
            )
        )  # fmt: skip
    return created, [row for row in carry if row[3] != 0]


def check_finish(
    record_id: int,
    owner: str,
    state: RecordState,
    row: tuple[Any, ...] | None,
    *,
    expired: Callable[[tuple[Any, ...]], bool],
) -> bool:
    """May ``owner`` move the record (``row``: ``COLUMNS``, then owner) to ``state``?

    False when nothing is to change (``sent`` again: an identical repeat was answered again);
    ``LeaseLostError`` when the record is gone, not frozen, or leased to another whose lease
    has not ``expired``.
    """
    if row is None:
        raise LeaseLostError(f"no usage record {record_id}")
    current, current_owner = row[5], row[8]
    if current == state and state == "sent":
        return False
    mine = current_owner == owner or current_owner is None or expired(row)
    if current != "frozen" or not mine:
        raise LeaseLostError(
            f"usage record {record_id} is {current} (lease of {current_owner!r}), "
            f"not frozen and leased to {owner!r}"
        )
    return True


def carried_rows(row: tuple[Any, ...], to_hour: int) -> list[UsageRow]:
    """A carried record's allocations (``row``: ``COLUMNS``) as open usage of ``to_hour``."""
    return [(row[1], to_hour, t, q) for t, q in sorted(allocations(row[4]).items())]


def pending_entry(
    stream: str, hour: int, state: Any, stored: str, detail: str | None
) -> BacklogEntry:
    """A frozen or held record's backlog entry: its allocations' total."""
    return BacklogEntry(stream, hour, state, sum(allocations(stored).values(), Decimal(0)), detail)


def backlog_order(entries: list[BacklogEntry]) -> list[BacklogEntry]:
    """The backlog's order: oldest hour first, then stream, then state."""
    entries.sort(key=lambda e: (e.hour, e.stream, e.state))
    return entries

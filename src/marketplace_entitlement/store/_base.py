"""The durable usage store's contract, written once for container metering and for SaaS.

Usage flows through three states, each a transaction:

1. **open**: ``add`` accumulates a quantity per (stream, hour, tags). Durable when it returns.
2. **frozen**: once an hour has closed, ``freeze`` turns each stream's accumulations of that hour
   into one record whose request payload is fixed (the exact JSON sent, byte for byte, on every
   attempt). Usage that arrives for an hour whose record is already frozen is carried to the open
   hour by the next ``freeze``, never merged into the frozen record.
3. **sent / held / carried**: a sender ``claim``s frozen records (a lease, so that one of several
   senders sends each), sends them, and marks each one ``sent`` (answered), ``held`` (kept but not
   retried, e.g. a customer not subscribed) or ``carried`` (its hour can no longer be reported: its
   allocations go back into the open usage of a later hour, and the record is kept for the audit).

A *stream* is what one record reports for, excluding time: for container metering the dimension;
for SaaS the customer (account id + license ARN, or customer identifier + product code) and the
dimension. It is an opaque string chosen by the caller (canonical JSON is a good choice). *Tags*
are the canonical text of one allocation's tags (``""`` when untagged). Hours are UTC epoch seconds
of the hour's start. Quantities are ``Decimal``.

Besides the three steps, ``ensure_record`` inserts one frozen record directly (idempotently: a
second call for the same stream and hour returns the first record unchanged), for a record that must
be sent before its hour closes (container metering's startup call); ``claim_record`` leases that
one record; usage added later for its hour is carried by ``freeze`` like any other. ``records``
lists every record for audits, health and tests.

Transitions out of ``frozen`` (``mark_sent``, ``hold``, ``carry``) need the caller's lease (or an
expired or absent one) and raise ``LeaseLostError`` otherwise; ``mark_sent`` of a record already
``sent`` is a no-op, as the service answers an identical repeat identically.

Backends: SQLite (``sqlite:///PATH``, standard library, WAL) and PostgreSQL (``postgresql://...``,
psycopg 3). Both pass the same contract tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, Protocol

HOUR = 3600

RecordState = Literal["frozen", "sent", "held", "carried"]


def hour_of(timestamp: float) -> int:
    """The start (UTC epoch seconds) of the hour holding ``timestamp``."""
    return int(timestamp // HOUR) * HOUR


def hour_text(hour: int) -> str:
    """An hour as people and logs read it: ``2026-12-01T10:00Z``."""
    return time.strftime("%Y-%m-%dT%H:00Z", time.gmtime(hour))


@dataclass(frozen=True)
class Usage:
    """One quantity to accumulate: ``stream`` in ``hour``, allocated to ``tags``."""

    stream: str
    hour: int
    quantity: Decimal
    tags: str = ""


@dataclass(frozen=True)
class FrozenRecord:
    """A record whose payload is fixed: it is sent byte-identically until answered."""

    id: int
    stream: str
    hour: int
    payload: str
    allocations: Mapping[str, Decimal]
    state: RecordState
    attempts: int
    detail: str | None = None


@dataclass(frozen=True)
class Frozen:
    """What a ``PayloadBuilder`` decides for one stream's closed hour.

    ``payload`` is the exact JSON to send; ``sent`` the allocations it reports; ``remainder`` what
    could not go into it (a quantity above the model's maximum) and is carried to the open hour.
    ``payload`` is ``None`` when nothing is to be sent for this hour (everything is carried).
    """

    payload: str | None
    sent: Mapping[str, Decimal]
    remainder: Mapping[str, Decimal]


PayloadBuilder = Callable[[str, int, Mapping[str, Decimal]], Frozen]
"""``(stream, hour, allocations by tags) -> Frozen``: the caller's request format."""


@dataclass(frozen=True)
class BacklogEntry:
    """One stream's hour that is not yet done: open quantity, or a record not yet sent or held."""

    stream: str
    hour: int
    state: Literal["open", "frozen", "held"]
    quantity: Decimal
    detail: str | None = None


class LeaseLostError(Exception):
    """A record changed state or lease under the caller (another sender took it over)."""


class UsageStore(Protocol):
    """The operations both backends provide. Every method is one transaction."""

    def add(self, usage: Iterable[Usage]) -> None:
        """Accumulate every item, all or nothing; durable (survives kill -9) when it returns."""
        ...

    def freeze(
        self, *, before_hour: int, open_hour: int, build: PayloadBuilder
    ) -> list[FrozenRecord]:
        """Freeze each stream's usage of every hour before ``before_hour`` into one record.

        A stream/hour that already has a record gets no second one: its new usage is carried to
        ``open_hour``. Returns the records created.
        """
        ...

    def ensure_record(
        self, stream: str, hour: int, *, allocations: Mapping[str, Decimal], payload: str
    ) -> FrozenRecord:
        """Insert a frozen record for ``stream``/``hour`` unless one exists; return the stored one.

        The stored record wins: a repeat call returns the first payload, byte for byte.
        """
        ...

    def claim(self, *, owner: str, limit: int, lease_seconds: float) -> list[FrozenRecord]:
        """Lease up to ``limit`` frozen records to ``owner``, oldest hour first."""
        ...

    def claim_record(self, record_id: int, *, owner: str, lease_seconds: float) -> bool:
        """Lease this one record to ``owner`` if it is frozen and not leased by another."""
        ...

    def mark_sent(self, record_id: int, *, owner: str, detail: str) -> None:
        """The service answered for this record (``detail``: e.g. its MeteringRecordId)."""
        ...

    def hold(self, record_id: int, *, owner: str, reason: str) -> None:
        """Keep the record, surface ``reason``, and stop sending it."""
        ...

    def carry(self, record_id: int, *, owner: str, to_hour: int, reason: str) -> None:
        """Give up this record's hour: its allocations are added to the open usage of ``to_hour``."""
        ...

    def release(self, record_id: int, *, owner: str) -> None:
        """End ``owner``'s lease without an answer (a retryable failure): another claim may take it."""
        ...

    def records(self, *, stream: str | None = None) -> list[FrozenRecord]:
        """Every record in any state, oldest hour first; ``stream`` narrows to one stream."""
        ...

    def backlog(self) -> list[BacklogEntry]:
        """Every stream/hour that is open, frozen but unsent, or held, oldest first."""
        ...

    def close(self) -> None:
        """Release the connection(s)."""
        ...

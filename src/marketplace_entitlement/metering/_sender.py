"""The background sender: after each hour closes, one MeterUsage per dimension, frozen, then sent.

Each hour, at a random moment inside the send window after the top of the hour (so that a fleet of
pods does not spend the buyer's account-wide 10/s quota at the same second), the sender freezes
every closed hour's usage into records (``store.freeze``) and sends them oldest first:

- answered: ``mark_sent`` with the MeteringRecordId;
- throttling, server errors, the network: the lease is released and the record is resent, byte
  for byte, after a jittered backoff on an interruptible wait;
- ``DuplicateRequestException`` (the service holds another quantity for this task's hour),
  ``TimestampOutOfBoundsException``, or a record whose Timestamp is about to leave the service's
  6-hour window: the record's usage is carried into the open hour (``store.carry``), never dropped;
- anything else (a dimension or tag the service refuses, the buyer no longer entitled): the record
  is held, kept in the store and reported by the health status.

Waits are on ``stop`` with a bounded length, and the wall clock is read again after each, so the
sender follows a clock that jumps or runs fast (libfaketime in tests).
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol, cast

from marketplace_entitlement._client import LazyClient
from marketplace_entitlement._errors import (
    EntitlementError,
    RegistrationInterrupted,
    ServiceUnavailableError,
)
from marketplace_entitlement._retry import CREDENTIAL_CODES, backoff_delays, call_with_retries
from marketplace_entitlement.metering._payload import MeterUsageBuilder
from marketplace_entitlement.store import (
    HOUR,
    FrozenRecord,
    LeaseLostError,
    Usage,
    UsageStore,
    hour_of,
)

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 6 * HOUR  # the service refuses Timestamps older than this
WINDOW_MARGIN_SECONDS = 10 * 60  # records this close to the window's end are carried, not sent
CLOCK_RECHECK_SECONDS = 5.0  # longest wait before the wall clock is read again
LEASE_SECONDS = 120.0  # an expired lease only leads to an identical (idempotent) repeat
SEND_BACKOFF_CAP_SECONDS = 30.0
CLAIM_BATCH = 25
CARRY_CODES = frozenset({"DuplicateRequestException", "TimestampOutOfBoundsException"})
# Refusals that a fixed role or network may cure: released and retried, never held.
RETRY_LATER_CODES = frozenset({"AccessDeniedException"}) | CREDENTIAL_CODES


class MeterUsageClient(Protocol):
    """The part of botocore's ``meteringmarketplace`` client the sender calls."""

    def meter_usage(self, **kwargs: Any) -> dict[str, Any]:
        """Call MeterUsage."""
        ...  # pragma: no cover


@dataclass
class DimensionHealth:
    """What the status file reports per dimension."""

    last_hour_sent: int | None = None
    backlog: Decimal = Decimal(0)
    oldest_unsent_hour: int | None = None
    held: int = 0


@dataclass
class SenderHealth:
    """A snapshot of the sender's progress, for the status file and the backlog policy."""

    at: float
    dimensions: dict[str, DimensionHealth] = field(default_factory=dict)
    last_error: str | None = None

    @property
    def oldest_unsent_hour(self) -> int | None:
        """The oldest closed hour with usage not yet answered (None: nothing behind)."""
        hours = [d.oldest_unsent_hour for d in self.dimensions.values() if d.oldest_unsent_hour]
        return min(hours) if hours else None

    def to_json(self) -> dict[str, Any]:
        """The ``metering`` member of the status file."""
        return {
            "at": self.at,
            "oldest_unsent_hour": _iso(self.oldest_unsent_hour),
            "last_error": self.last_error,
            "dimensions": {
                name: {
                    "last_hour_sent": _iso(d.last_hour_sent),
                    "backlog": int(d.backlog),
                    "oldest_unsent_hour": _iso(d.oldest_unsent_hour),
                    "held_records": d.held,
                }
                for name, d in sorted(self.dimensions.items())
            },
        }


def _too_old_at(record: FrozenRecord) -> float:
    """When a record is carried instead of sent: shortly before its Timestamp leaves the window."""
    timestamp = int(json.loads(record.payload)["Timestamp"])
    return timestamp + WINDOW_SECONDS - WINDOW_MARGIN_SECONDS


def _iso(hour: int | None) -> str | None:
    return None if hour is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(hour))


class Sender:
    """Sends the store's closed hours with MeterUsage; one per process, several per store are fine."""

    def __init__(
        self,
        store: UsageStore,
        client: LazyClient,
        *,
        product_code: str,
        dimensions: Sequence[str],
        send_window: float,
        owner: str,
        stop: threading.Event,
        on_health: Callable[[SenderHealth], None] | None = None,
        on_sent: Callable[[FrozenRecord, str], None] | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self._client = client
        self.product_code = product_code
        self.dimensions = tuple(dimensions)
        self.send_window = send_window
        self.owner = owner
        self.stop = stop
        self._on_health = on_health
        self._on_sent = on_sent
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 (spreading sends needs no secrecy)
        self._last_sent: dict[str, int] = {}
        self._zero_hour: int | None = None
        self._due_at = 0.0
        self._round_done = False
        self._due_hour: int | None = None
        self._retry_at: float | None = None  # monotonic
        self._retries: Iterator[float] = self._new_retries()
        self._last_error: str | None = None
        self._thread: threading.Thread | None = None
        for record in store.records():
            if record.state == "sent":
                self._last_sent[record.stream] = max(
                    self._last_sent.get(record.stream, 0), record.hour
                )

    def _new_retries(self) -> Iterator[float]:
        return backoff_delays(cap=SEND_BACKOFF_CAP_SECONDS, rng=self._rng)

    # -- the loop ---------------------------------------------------------------------------

    def start(self) -> Sender:
        """Run the loop in a daemon thread until ``stop`` is set."""
        self._thread = threading.Thread(target=self._loop, name="marketplace-metering", daemon=True)
        self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> None:
        """Wait for the loop's thread to end (after ``stop`` is set)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self.stop.is_set():
            try:
                wait = self.step()
            except Exception:  # the outermost loop: log and go on, the store keeps everything
                logger.exception(
                    "metering sender failed; retrying", extra={"event": "metering.sender_error"}
                )
                wait = CLOCK_RECHECK_SECONDS
            self.stop.wait(min(wait, CLOCK_RECHECK_SECONDS))

    def step(self) -> float:
        """Do what is due now; return how long (seconds, real) until something may be due."""
        now = self._clock()
        hour = hour_of(now)
        if self._zero_hour != hour:
            # Declared dimensions with no usage this hour are reported as zero (see docs).
            self.store.add(Usage(d, hour, Decimal(0)) for d in self.dimensions)
            self._zero_hour = hour
        if self._due_hour != hour:
            self._due_hour = hour
            self._due_at = hour + self._rng.uniform(0, self.send_window)
            self._round_done = False
        if not self._round_done and now >= self._due_at:
            self._round_done = True
            self.send_due()
        elif self._retry_at is not None and time.monotonic() >= self._retry_at:
            self.send_due()
        if not self._round_done:
            return self._due_at - now
        if self._retry_at is not None:
            return max(0.05, self._retry_at - time.monotonic())
        return hour + HOUR - now

    def send_due(self, *, include_open_hour: bool = False, deadline: float | None = None) -> bool:
        """Freeze closed hours (and the open one if asked) and send every frozen record.

        Returns True when nothing is left to send. ``deadline`` (monotonic) bounds the retries.
        """
        now = self._clock()
        hour = hour_of(now)
        build = MeterUsageBuilder(self.product_code, now)
        # Closed hours first: their late usage is carried into this hour...
        self.store.freeze(before_hour=hour, open_hour=hour, build=build)
        if include_open_hour:
            # ...and so sent with it when the unfinished hour goes too (on stop): records too old
            # to send are carried into it first, as nothing can be carried into it once frozen.
            self._carry_expired(now)
            self.store.freeze(before_hour=hour + HOUR, open_hour=hour + HOUR, build=build)
        done = True
        while not self.stop.is_set() or deadline is not None:
            records = self.store.claim(
                owner=self.owner, limit=CLAIM_BATCH, lease_seconds=LEASE_SECONDS
            )
            if not records:
                break
            if deadline is not None and time.monotonic() >= deadline:
                for record in records:
                    self.store.release(record.id, owner=self.owner)
                done = False
                break
            outcome = "ok"
            for index, record in enumerate(records):
                outcome = self._send(record, deadline)
                if outcome != "ok":
                    for rest in records[index + 1 :]:
                        self.store.release(rest.id, owner=self.owner)
                    break
            if outcome != "ok":
                done = False
                break
        if done:
            self._retry_at = None
            self._retries = self._new_retries()
            self._last_error = None
        else:
            self._retry_at = time.monotonic() + next(self._retries)
        self.report_health()
        return done

    def _carry_expired(self, now: float) -> None:
        """Carry every frozen record whose Timestamp is about to leave the window; release the rest."""
        while True:
            records = self.store.claim(owner=self.owner, limit=1000, lease_seconds=LEASE_SECONDS)
            expired = [r for r in records if now >= _too_old_at(r)]
            for record in records:
                if record in expired:
                    self._carry(record, "its hour left the service's 6-hour window unanswered")
                else:
                    self.store.release(record.id, owner=self.owner)
            if len(records) < 1000 or not expired:
                return

    def _send(self, record: FrozenRecord, deadline: float | None) -> str:
        """Send one record; return ``ok`` (answered, carried or held) or ``later``."""
        request = json.loads(record.payload)
        now = self._clock()
        too_old_at = _too_old_at(record)
        if now >= too_old_at:
            self._carry(record, "its hour left the service's 6-hour window unanswered")
            return "ok"
        # One attempt per round: the loop retries with a jittered backoff, reading the wall clock
        # again first (a record may meanwhile have to be carried). On stop, retries until the
        # deadline.
        budget = 0.0 if deadline is None else min(too_old_at - now, deadline - time.monotonic())
        client = cast("MeterUsageClient", self._client.get())
        stop = self.stop if deadline is None else threading.Event()
        try:
            response = call_with_retries(
                lambda: client.meter_usage(**request),
                timeout=max(budget, 0.0),
                stop=stop,
                delays=self._new_retries(),
                operation="MeterUsage",
            )
        except (ServiceUnavailableError, RegistrationInterrupted) as error:
            self._last_error = error.refusal_line()
            self.store.release(record.id, owner=self.owner)
            return "later"
        except EntitlementError as error:
            return self._refused(record, error)
        record_id = str(response.get("MeteringRecordId", ""))
        try:
            self.store.mark_sent(record.id, owner=self.owner, detail=record_id)
        except LeaseLostError:
            logger.info("record %d was taken over by another sender", record.id)
        self._last_sent[record.stream] = max(self._last_sent.get(record.stream, 0), record.hour)
        logger.info(
            "MeterUsage accepted %s for %s (%s units)",
            record.stream,
            _iso(record.hour),
            request.get("UsageQuantity"),
            extra={
                "event": "metering.sent",
                "dimension": record.stream,
                "hour": _iso(record.hour),
                "quantity": request.get("UsageQuantity"),
                "metering_record_id": record_id,
            },
        )
        if self._on_sent is not None:
            self._on_sent(record, record_id)
        return "ok"

    def _refused(self, record: FrozenRecord, error: EntitlementError) -> str:
        code = str(getattr(error, "aws_error_code", "") or type(error).__name__)
        self._last_error = error.refusal_line()
        if code in CARRY_CODES:
            self._carry(record, f"{code}: {error.message}")
            return "ok"
        if code in RETRY_LATER_CODES:
            logger.error("%s", error.refusal_line(), extra={"event": "metering.refused"})
            self.store.release(record.id, owner=self.owner)
            return "later"
        logger.error(
            "MeterUsage refused %s for %s, record held: %s",
            record.stream,
            _iso(record.hour),
            error.refusal_line(),
            extra={"event": "metering.held", "dimension": record.stream, "error_code": code},
        )
        self.store.hold(record.id, owner=self.owner, reason=error.refusal_line())
        return "ok"

    def _carry(self, record: FrozenRecord, reason: str) -> None:
        to_hour = hour_of(self._clock())
        self.store.carry(record.id, owner=self.owner, to_hour=to_hour, reason=reason)
        logger.warning(
            "usage of %s for %s carried into %s: %s",
            record.stream,
            _iso(record.hour),
            _iso(to_hour),
            reason,
            extra={"event": "metering.carried", "dimension": record.stream},
        )

    # -- health -----------------------------------------------------------------------------

    def health(self) -> SenderHealth:
        """Per dimension: last hour sent, unsent backlog of closed hours, oldest unsent hour."""
        now = self._clock()
        current = hour_of(now)
        snapshot = SenderHealth(at=now, last_error=self._last_error)
        for name in self.dimensions:
            snapshot.dimensions[name] = DimensionHealth(last_hour_sent=self._last_sent.get(name))
        for entry in self.store.backlog():
            dimension = snapshot.dimensions.setdefault(entry.stream, DimensionHealth())
            if entry.state == "held":
                dimension.held += 1
                if entry.quantity == 0:
                    continue  # a refused startup record: no usage waits on it (no backlog alarm)
            if entry.state == "open" and entry.hour >= current:
                continue
            dimension.backlog += entry.quantity
            if dimension.oldest_unsent_hour is None or entry.hour < dimension.oldest_unsent_hour:
                dimension.oldest_unsent_hour = entry.hour
        return snapshot

    def report_health(self) -> SenderHealth:
        """Compute the health snapshot and hand it to ``on_health``."""
        snapshot = self.health()
        if self._on_health is not None:
            self._on_health(snapshot)
        return snapshot

    def flush(self, timeout: float) -> bool:
        """Send everything, including the unfinished hour, within ``timeout`` seconds (SIGTERM).

        Returns True when everything was answered; otherwise what is left stays frozen in the store
        and is sent, identically, by the next start on the same state directory.
        """
        return self.send_due(include_open_hour=True, deadline=time.monotonic() + timeout)

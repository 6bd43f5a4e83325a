"""The sender: freeze closed hours, lease frozen records, send them with BatchMeterUsage.

Every record's answer decides its state:

- ``Success``: sent (its MeteringRecordId kept);
- ``DuplicateRecord``: the hour already holds another quantity for this customer and dimension,
  so the usage is carried into the open hour (never dropped);
- ``CustomerNotSubscribed``: held (a log event, ``usage status`` and the ``on_held`` callback),
  not retried;
- in ``UnprocessedRecords`` (or missing from the answer): released, retried in a later round.

Throttling, server errors and network failures are retried on the shared policy
(``call_with_retries``), every attempt waiting for the account's quota (``RateGate``). A refusal of
the whole request that one record can cause (an out-of-bounds timestamp, an unknown customer or
license, a bad dimension or allocation) is narrowed down by splitting the request in halves until
the record is alone; it is then carried (out of bounds) or held. Records whose hour can no longer
be reported (24 hours after it, or after 06:00 UTC on the 1st for last month's) are carried to the
open hour without being sent. Older records go first.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from marketplace_entitlement._errors import (
    EntitlementError,
    RegistrationInterrupted,
    ServiceUnavailableError,
)
from marketplace_entitlement._retry import backoff_delays, call_with_retries
from marketplace_entitlement.saas._rate import LocalRateGate, RateGate
from marketplace_entitlement.saas._records import (
    Request,
    build_record,
    pack,
    parse_stream,
    result_key,
)
from marketplace_entitlement.store import (
    HOUR,
    FrozenRecord,
    LeaseLostError,
    UsageStore,
    hour_of,
    hour_text,
)

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 24 * HOUR  # records are accepted up to 24 hours after the event
MONTH_END_GRACE_SECONDS = 6 * HOUR  # last month's records until 06:00 UTC on the 1st
SAFETY_MARGIN_SECONDS = 10 * 60  # give up on an hour this long before the service would
CLAIM_LIMIT = 1000
RETRY_TIMEOUT_SECONDS = 120.0
# Request-level refusals a single record can cause: narrowed down by splitting the request.
RECORD_FAULTS = frozenset(
    {
        "TimestampOutOfBoundsException",
        "InvalidCustomerIdentifierException",
        "InvalidLicenseException",
        "InvalidUsageDimensionException",
        "InvalidTagException",
        "InvalidUsageAllocationsException",
        "InvalidProductCodeException",
        "ValidationException",
    }
)


def month_cutoff(hour: int) -> float:
    """When usage of ``hour`` stops being accepted at month end: 06:00 UTC on the next 1st."""
    moment = datetime.fromtimestamp(hour, tz=timezone.utc)
    first = datetime(
        moment.year + moment.month // 12, moment.month % 12 + 1, 1, tzinfo=timezone.utc
    )
    return first.timestamp() + MONTH_END_GRACE_SECONDS


def reportable_until(hour: int) -> float:
    """The last moment (with the safety margin) at which ``hour``'s record is still sent."""
    return min(hour + WINDOW_SECONDS, month_cutoff(hour)) - SAFETY_MARGIN_SECONDS


@dataclass(frozen=True)
class HeldRecord:
    """A record kept but not sent again: whose, which dimension and hour, and why."""

    customer: str
    product_code: str
    dimension: str
    hour: int
    reason: str


@dataclass
class SendResult:
    """What one round did (counts of records, and calls made)."""

    frozen: int = 0
    calls: int = 0
    sent: int = 0
    carried: int = 0
    held: int = 0
    retry: int = 0
    requests: list[int] = field(default_factory=list)  # records per successful call

    def add(self, other: SendResult) -> None:
        """Accumulate ``other`` into this result."""
        for name in ("frozen", "calls", "sent", "carried", "held", "retry"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.requests += other.requests


class UsageSender:
    """Sends a store's frozen records; one instance per process (several may share the store)."""

    def __init__(
        self,
        store: UsageStore,
        client: Callable[[], Any],
        *,
        rate_gate: RateGate | None = None,
        owner: str | None = None,
        on_held: Callable[[HeldRecord], None] | None = None,
        clock: Callable[[], float] = time.time,
        retry_timeout: float = RETRY_TIMEOUT_SECONDS,
        lease_seconds: float | None = None,
        retry_delays: Callable[[], Iterator[float]] = backoff_delays,
        claim_limit: int = CLAIM_LIMIT,
    ) -> None:
        self.store = store
        self._client = client
        self.rate_gate = rate_gate or LocalRateGate()
        self.owner = owner or f"sender-{uuid.uuid4().hex[:12]}"
        self.on_held = on_held
        self.clock = clock
        self.retry_timeout = retry_timeout
        # A lease outlives a request's retries, so no other sender resends a record meanwhile.
        self.lease_seconds = lease_seconds if lease_seconds is not None else retry_timeout + 120.0
        self.retry_delays = retry_delays
        self.claim_limit = claim_limit

    # -- a round ---------------------------------------------------------------------------------

    def send_once(
        self, stop: threading.Event | None = None, *, retry_timeout: float | None = None
    ) -> SendResult:
        """Freeze every closed hour, then send everything claimable once.

        Returns what was done; ``retry`` counts records left for a later round (unprocessed, or
        the service unavailable for ``retry_timeout``, by default the sender's). Raises
        EntitlementError for a refusal no record can be blamed for (credentials, permissions,
        region, API disabled).
        """
        stop = stop or threading.Event()
        timeout = self.retry_timeout if retry_timeout is None else retry_timeout
        result = SendResult()
        now = self.clock()
        open_hour = hour_of(now)
        result.frozen = len(
            self.store.freeze(before_hour=open_hour, open_hour=open_hour, build=build_record)
        )
        seen: set[int] = set()
        while not stop.is_set():
            claimed = self.store.claim(
                owner=self.owner, limit=self.claim_limit, lease_seconds=self.lease_seconds
            )
            fresh = [r for r in claimed if r.id not in seen]
            for record in claimed:
                if record.id in seen:  # tried in this round already: leave it for the next one
                    self._release([record])
            if not fresh:
                break
            seen.update(r.id for r in fresh)
            requests = pack(self._carry_expired(fresh, result))
            for index, request in enumerate(requests):
                if stop.is_set():
                    self._release(request.records)
                    continue
                try:
                    self._send(request, stop, result, timeout)
                except BaseException:
                    # A refusal no record can be blamed for: free the rest for the next round.
                    for rest in requests[index + 1 :]:
                        self._release(rest.records)
                    raise
        return result

    def send_until_settled(self, stop: threading.Event | None = None) -> SendResult:
        """Send rounds until no record is left to retry, within ``retry_timeout`` in all.

        What ``usage send`` does: records answered in ``UnprocessedRecords`` (or left by a round
        for another reason) are sent again after a backoff wait, as long as the budget lasts; each
        round's request retries get only what is left of it. The result sums the rounds, except
        ``retry``: what the last round left.
        """
        stop = stop or threading.Event()
        deadline = time.monotonic() + self.retry_timeout
        delays = self.retry_delays()
        total = SendResult()
        while True:
            result = self.send_once(stop, retry_timeout=max(0.0, deadline - time.monotonic()))
            total.add(result)
            total.retry = result.retry
            remaining = deadline - time.monotonic()
            if not result.retry or remaining <= 0 or stop.wait(min(next(delays), remaining)):
                return total
            logger.info(
                "%d records left; sending them again (%.0f s of the retry budget left)",
                result.retry,
                deadline - time.monotonic(),
                extra={"event": "saas.usage.resend", "records": result.retry},
            )

    def _carry_expired(
        self, records: Sequence[FrozenRecord], result: SendResult
    ) -> list[FrozenRecord]:
        """Carry records whose hour can no longer be reported; return the others."""
        now = self.clock()
        sendable = []
        for record in records:
            if now < reportable_until(record.hour):
                sendable.append(record)
                continue
            self._carry(record, "its hour can no longer be reported (24-hour window or month end)")
            result.carried += 1
        return sendable

    # -- one request -----------------------------------------------------------------------------

    def _send(
        self, request: Request, stop: threading.Event, result: SendResult, timeout: float
    ) -> None:
        client = self._client()
        params = request.parameters()

        def call() -> dict[str, Any]:
            if not self.rate_gate.wait_turn(stop):
                raise RegistrationInterrupted("shutdown requested while waiting for the quota")
            result.calls += 1
            answer: dict[str, Any] = client.batch_meter_usage(**params)
            return answer

        try:
            answer = call_with_retries(
                call,
                timeout=timeout,
                stop=stop,
                delays=self.retry_delays(),
                operation="BatchMeterUsage",
            )
        except (ServiceUnavailableError, RegistrationInterrupted) as error:
            self._release(request.records)
            result.retry += len(request.records)
            if isinstance(error, ServiceUnavailableError):
                logger.warning(
                    "BatchMeterUsage unavailable; %d records left for a later round",
                    len(request.records),
                    extra={"event": "saas.usage.retry_later", "records": len(request.records)},
                )
            return
        except EntitlementError as error:
            code = str(getattr(error, "aws_error_code", "") or "")
            if code not in RECORD_FAULTS:
                self._release(request.records)
                raise
            self._narrow(request, code, error.message, stop, result, timeout=timeout)
            return
        self._settle(request, answer, result)

    def _narrow(
        self,
        request: Request,
        code: str,
        message: str,
        stop: threading.Event,
        result: SendResult,
        *,
        timeout: float,
    ) -> None:
        """Split a refused request until the record at fault is alone; carry or hold it."""
        if len(request.records) > 1:
            middle = len(request.records) // 2
            for half in (request.records[:middle], request.records[middle:]):
                self._send(
                    Request(request.product_code, request.identification, half),
                    stop,
                    result,
                    timeout,
                )
            return
        (record,) = request.records
        if code == "TimestampOutOfBoundsException":
            self._carry(record, f"{code}: {message}")
            result.carried += 1
        else:
            self._hold(record, f"{code}: {message}")
            result.held += 1

    def _settle(self, request: Request, answer: dict[str, Any], result: SendResult) -> None:
        """Record each answered record's state; unanswered ones are released for a retry."""
        by_key = {result_key(parse_payload(r)): r for r in request.records}
        answered: set[int] = set()
        accepted = 0
        for item in answer.get("Results") or []:
            record = by_key.get(result_key(item.get("UsageRecord") or {}))
            if record is None or record.id in answered:
                continue
            answered.add(record.id)
            status = item.get("Status")
            if status == "Success":
                self._mark_sent(record, str(item.get("MeteringRecordId") or ""))
                result.sent += 1
                accepted += 1
            elif status == "DuplicateRecord":
                self._carry(record, "DuplicateRecord: the hour already holds another quantity")
                result.carried += 1
            elif status == "CustomerNotSubscribed":
                self._hold(record, "CustomerNotSubscribed")
                result.held += 1
            else:
                answered.discard(record.id)
        leftover = [r for r in request.records if r.id not in answered]
        if leftover:
            self._release(leftover)
            result.retry += len(leftover)
            logger.info(
                "%d records unprocessed; sent again in a later round",
                len(leftover),
                extra={"event": "saas.usage.unprocessed", "records": len(leftover)},
            )
        result.requests.append(len(request.records))
        logger.debug(
            "BatchMeterUsage: %d records, %d accepted",
            len(request.records),
            accepted,
            extra={"event": "saas.usage.sent", "records": len(request.records)},
        )

    # -- state changes -----------------------------------------------------------------------------

    def _carry(self, record: FrozenRecord, reason: str) -> None:
        to_hour = max(hour_of(self.clock()), record.hour + HOUR)
        stream = parse_stream(record.stream)
        logger.warning(
            "usage of %s %s for %s carried to %s: %s",
            stream.customer_text,
            stream.dimension,
            hour_text(record.hour),
            hour_text(to_hour),
            reason,
            extra={
                "event": "saas.usage.carried",
                "customer": stream.customer_text,
                "dimension": stream.dimension,
                "hour": hour_text(record.hour),
                "to_hour": hour_text(to_hour),
                "reason": reason,
            },
        )
        self._finish(
            lambda: self.store.carry(record.id, owner=self.owner, to_hour=to_hour, reason=reason)
        )

    def _hold(self, record: FrozenRecord, reason: str) -> None:
        stream = parse_stream(record.stream)
        held = HeldRecord(
            stream.customer_text, stream.product_code, stream.dimension, record.hour, reason
        )
        logger.warning(
            "usage of %s %s for %s held: %s",
            held.customer,
            held.dimension,
            hour_text(held.hour),
            reason,
            extra={
                "event": "saas.usage.held",
                "customer": held.customer,
                "dimension": held.dimension,
                "hour": hour_text(held.hour),
                "reason": reason,
            },
        )
        self._finish(lambda: self.store.hold(record.id, owner=self.owner, reason=reason))
        if self.on_held is not None:
            try:
                self.on_held(held)
            except Exception:
                logger.exception(
                    "the on_held callback failed", extra={"event": "saas.usage.callback"}
                )

    def _mark_sent(self, record: FrozenRecord, record_id: str) -> None:
        self._finish(lambda: self.store.mark_sent(record.id, owner=self.owner, detail=record_id))

    def _release(self, records: Sequence[FrozenRecord]) -> None:
        for record in records:
            self.store.release(record.id, owner=self.owner)

    def _finish(self, change: Callable[[], None]) -> None:
        try:
            change()
        except LeaseLostError as error:
            # Our lease expired while we waited and another sender took the record over; it
            # resends the same frozen payload, which the service answers idempotently.
            logger.info("%s", error, extra={"event": "saas.usage.lease_lost"})

    # -- the background loop -------------------------------------------------------------------------

    def run(self, stop: threading.Event, *, interval: float = 60.0) -> None:
        """Send rounds until ``stop`` is set: every ``interval`` seconds, sooner after a failure.

        The wall clock is re-read every round, so the top of an hour is noticed within
        ``interval`` even when the wall clock jumps or runs fast.
        """
        delays: Iterator[float] = self.retry_delays()
        while not stop.is_set():
            wait = interval
            try:
                result = self.send_once(stop)
            except EntitlementError as error:
                logger.error(  # noqa: TRY400  (a refusal, not a bug: no traceback)
                    "usage sending refused: %s",
                    error.refusal_line(),
                    extra={"event": "saas.usage.refused"},
                )
                wait = max(interval, next(delays))
            except Exception:  # the outermost loop: log, wait, go on
                logger.exception("usage sending failed", extra={"event": "saas.usage.error"})
                wait = max(interval, next(delays))
            else:
                if result.retry:
                    wait = min(interval, next(delays))
                else:
                    delays = self.retry_delays()
            stop.wait(wait)


def parse_payload(record: FrozenRecord) -> dict[str, Any]:
    """A frozen record's UsageRecord, parsed."""
    parsed: dict[str, Any] = json.loads(record.payload)
    return parsed

"""``UsageReporter``: record SaaS usage durably, per customer, dimension and hour; send it.

``report`` adds the quantity to the store (SQLite or PostgreSQL, ``MARKETPLACE_USAGE_STORE``) and
returns once it is durable. ``start`` runs a sender thread (``UsageSender``) in this process;
``marketplace-entitlement usage send`` does one round from cron or a scheduled task instead. Any
number of reporters and senders may share one store: each record is sent by exactly one.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from decimal import Decimal
from types import TracebackType
from typing import Any

from marketplace_entitlement import _env
from marketplace_entitlement._client import LazyClient
from marketplace_entitlement._retry import backoff_delays
from marketplace_entitlement._settings import Settings, load_settings
from marketplace_entitlement.saas._customer import SaasCustomer
from marketplace_entitlement.saas._rate import DEFAULT_RATE, LocalRateGate, RateGate, StoreRateGate
from marketplace_entitlement.saas._records import check_quantity, stream_key, tags_key
from marketplace_entitlement.saas._sender import (
    RETRY_TIMEOUT_SECONDS,
    HeldRecord,
    SendResult,
    UsageSender,
)
from marketplace_entitlement.store import BacklogEntry, Usage, UsageStore, hour_of, open_store

logger = logging.getLogger(__name__)

DEFAULT_STORE_URL = "sqlite:///marketplace-usage.sqlite3"  # in the working directory
SEND_INTERVAL_SECONDS = 60.0
RATE_BUCKET = "BatchMeterUsage"


def open_usage_store(settings: Settings) -> UsageStore:
    """The store ``MARKETPLACE_USAGE_STORE`` names (default: SQLite in the working directory)."""
    return open_store(settings.usage_store or DEFAULT_STORE_URL, variable=_env.USAGE_STORE)


def default_rate_gate(store: UsageStore, rate: float = DEFAULT_RATE) -> RateGate:
    """A quota shared through the store when it can (PostgreSQL), else this process's own."""
    if hasattr(store, "take_token"):
        return StoreRateGate(store, name=RATE_BUCKET, rate=rate)  # type: ignore[arg-type]
    return LocalRateGate(rate)


class UsageReporter:
    """Records SaaS usage per customer, dimension and hour, and sends it with BatchMeterUsage.

    ``store`` is a URL, an open ``UsageStore``, or None for ``MARKETPLACE_USAGE_STORE``. ``client``
    is a botocore ``meteringmarketplace`` client (default: one from the environment, created when
    first needed). ``on_held`` is called for each record kept but not sent (a customer not
    subscribed). Nothing runs until ``start()``.
    """

    def __init__(
        self,
        store: str | UsageStore | None = None,
        *,
        client: Any | None = None,
        environ: Mapping[str, str] | None = None,
        settings: Settings | None = None,
        on_held: Callable[[HeldRecord], None] | None = None,
        rate: float = DEFAULT_RATE,
        rate_gate: RateGate | None = None,
        send_interval: float = SEND_INTERVAL_SECONDS,
        retry_timeout: float | None = None,
        lease_seconds: float | None = None,
        retry_delays: Callable[[], Iterator[float]] = backoff_delays,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if settings is None:
            settings = load_settings(os.environ if environ is None else environ, for_saas=True)
        if isinstance(store, str):
            self.store = open_store(store, variable=_env.USAGE_STORE)
        elif store is None:
            self.store = open_usage_store(settings)
        else:
            self.store = store
        self._lazy = LazyClient(settings, client)
        self.clock = clock
        self.send_interval = send_interval
        self.sender = UsageSender(
            self.store,
            self._lazy.get,
            rate_gate=rate_gate or default_rate_gate(self.store, rate),
            on_held=on_held,
            clock=clock,
            retry_timeout=RETRY_TIMEOUT_SECONDS if retry_timeout is None else retry_timeout,
            lease_seconds=lease_seconds,
            retry_delays=retry_delays,
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def report(
        self,
        customer: SaasCustomer,
        dimension: str,
        quantity: int | Decimal,
        *,
        timestamp: float | datetime | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """Add ``quantity`` of ``dimension`` for ``customer`` in the hour of ``timestamp``.

        Durable when it returns. ``quantity``: a non-negative int, or a Decimal with at most six
        decimal places (sent as QuantityAsDecimal). ``tags`` (at most 5) allocate the usage for
        the buyer's cost allocation. Raises ValueError/TypeError for a record AWS would refuse.
        """
        if not isinstance(customer, SaasCustomer):
            raise TypeError("customer must be a SaasCustomer (resolve_customer returns one)")
        if not isinstance(dimension, str) or not 1 <= len(dimension) <= 255:
            raise ValueError("dimension must be a name of 1 to 255 characters")
        amount = check_quantity(quantity)
        if isinstance(timestamp, datetime):
            if timestamp.tzinfo is None:
                raise ValueError("timestamp must be timezone-aware (UTC)")
            moment = timestamp.timestamp()
        else:
            moment = self.clock() if timestamp is None else float(timestamp)
        usage = Usage(stream_key(customer, dimension), hour_of(moment), amount, tags_key(tags))
        self.store.add([usage])

    def send_now(self, stop: threading.Event | None = None) -> SendResult:
        """One sending round in the calling thread (records left over wait for the next one)."""
        return self.sender.send_once(stop or self._stop)

    def send_until_settled(self, stop: threading.Event | None = None) -> SendResult:
        """Sending rounds until nothing is left to retry or the retry budget is spent (``usage send``)."""
        return self.sender.send_until_settled(stop or self._stop)

    def backlog(self) -> list[BacklogEntry]:
        """Every customer/dimension hour not yet sent: open, frozen, or held."""
        return self.store.backlog()

    def start(self) -> UsageReporter:
        """Start the sender thread (a daemon); ``stop()`` ends it."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self.sender.run,
                args=(self._stop,),
                kwargs={"interval": self.send_interval},
                name="marketplace-usage-sender",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self, timeout: float | None = 30.0) -> None:
        """Stop the sender thread (records it held are released when their lease ends)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def close(self) -> None:
        """Stop sending and close the store."""
        self.stop()
        self.store.close()

    def __enter__(self) -> UsageReporter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

"""Custom metering put together: the store, the startup gate, the sender, ingestion and health.

``run`` (custom pricing) and the import API's ``start_metering`` both build a ``Metering``; ``run``
also serves the loopback ingestion endpoints for CMD and sends the unfinished hour when it stops.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from marketplace_entitlement import _env
from marketplace_entitlement._client import LazyClient, MeteringClient
from marketplace_entitlement._errors import (
    ConfigurationError,
    EntitlementError,
    ServiceUnavailableError,
)
from marketplace_entitlement._settings import Settings
from marketplace_entitlement._status import StatusFile
from marketplace_entitlement.metering._gate import (
    MeteringEntitlement,
    MeterUsageGate,
    bind_product,
)
from marketplace_entitlement.metering._ingest import HttpIngestion, StatsdIngestion
from marketplace_entitlement.metering._recorder import (
    Recorder,
    open_metering_store,
    set_default_recorder,
)
from marketplace_entitlement.metering._sender import Sender, SenderHealth
from marketplace_entitlement.store import HOUR, BacklogEntry, FrozenRecord, UsageStore, hour_text

logger = logging.getLogger(__name__)

BACKLOG_LIMIT_SECONDS = 4 * HOUR  # unsent usage this old nears the service's 6-hour window


def custom_gate(settings: Settings, client: MeteringClient | None = None) -> MeterUsageGate:
    """The MeterUsage gate, storing its startup record when a state directory is configured."""
    if settings.metering_state_dir is None:
        return MeterUsageGate(settings, client)
    store = open_metering_store(settings.metering_state_dir)
    try:
        bind_product(settings.metering_state_dir, store, settings.product_code)
    except BaseException:
        store.close()
        raise
    return MeterUsageGate(settings, client, store=store)


def with_state_dir(settings: Settings) -> Settings:
    """``run`` needs a store: without a state directory, a temporary one, said loudly."""
    if settings.pricing != "custom" or settings.metering_state_dir is not None:
        return settings
    directory = Path(tempfile.mkdtemp(prefix="marketplace-metering-"))
    logger.warning(
        "%s is not set: usage is kept in %s, inside the container; a container restart loses "
        "the usage not yet sent (and repeats of the hour's startup record are no longer "
        "recognised). Mount a task- or pod-scoped volume there (docs/metering.md)",
        _env.METERING_STATE_DIR,
        directory,
        extra={"event": "metering.no_state_dir", "state_dir": str(directory)},
    )
    return dataclasses.replace(settings, metering_state_dir=directory)


def child_environment(
    settings: Settings, base: Mapping[str, str], metering: Metering | None = None
) -> dict[str, str]:
    """CMD's environment: the metering settings ``record_usage`` and ``record`` need, as resolved.

    The ingestion addresses are the bound ones (a port given as 0 is the one the kernel chose).
    """
    env = dict(base)
    if settings.pricing == "custom":
        env[_env.PRICING] = "custom"
        env[_env.DIMENSIONS] = ",".join(settings.dimensions)
        env[_env.METERING_STATE_DIR] = str(settings.metering_state_dir)
        http = metering.http if metering is not None else None
        statsd = metering.statsd if metering is not None else None
        for variable, address in (
            (_env.METERING_HTTP, http.address if http else settings.metering_http),
            (_env.METERING_STATSD, statsd.address if statsd else settings.metering_statsd),
        ):
            env[variable] = "off" if address is None else _address(address)
    return env


@dataclasses.dataclass
class Listeners:
    """``run``'s loopback ingestion endpoints, bound (not yet serving) before the startup call."""

    recorder: Recorder
    http: HttpIngestion | None = None
    statsd: StatsdIngestion | None = None

    def close(self) -> None:
        """Unbind the endpoints (the gate refused: nothing will serve them)."""
        for server in (self.http, self.statsd):
            if server is not None:
                server.stop()
        self.http = self.statsd = None


def bind_for_run(gate: MeterUsageGate) -> Listeners:
    """Bind the configured endpoints before the startup MeterUsage.

    A port already in use (another ``run`` on the default 127.0.0.1:9811) is a configuration error
    (78, naming the variable) refused before any call to AWS, not after the startup record is sent.
    """
    assert gate.store is not None
    settings = gate.settings
    listeners = Listeners(Recorder(gate.store, settings.dimensions))
    try:
        if settings.metering_http is not None:
            listeners.http = HttpIngestion(
                settings.metering_http, listeners.recorder, variable=_env.METERING_HTTP
            )
        if settings.metering_statsd is not None:
            listeners.statsd = StatsdIngestion(
                settings.metering_statsd, listeners.recorder, variable=_env.METERING_STATSD
            )
    except ConfigurationError:
        listeners.close()
        raise
    return listeners


class Metering:
    """Running custom metering: records usage, sends it hourly, reports health; ``stop()`` ends it."""

    def __init__(
        self,
        settings: Settings,
        store: UsageStore,
        client: LazyClient,
        entitlement: MeteringEntitlement,
        *,
        status: StatusFile | None = None,
        listeners: Listeners | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.entitlement = entitlement
        self.recorder = (
            listeners.recorder if listeners is not None else Recorder(store, settings.dimensions)
        )
        self._listeners = listeners
        self._status = status
        self._stop = threading.Event()
        self._stopped = False
        self._warned_hour: int | None = None
        self.on_backlog_stop: Callable[[str], None] | None = None
        owner = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        self.sender = Sender(
            store,
            client,
            product_code=settings.product_code,
            dimensions=settings.dimensions,
            send_window=settings.metering_send_window,
            owner=owner,
            stop=self._stop,
            on_health=self._on_health,
            on_sent=self._on_sent,
        )
        self.http: HttpIngestion | None = None
        self.statsd: StatsdIngestion | None = None

    def start(self) -> Metering:
        """Start the sender, and serve the ingestion endpoints ``run`` bound (if any)."""
        if self._listeners is not None:  # bound before the startup call (bind_for_run)
            self.http, self.statsd = self._listeners.http, self._listeners.statsd
            for server in (self.http, self.statsd):
                if server is not None:
                    server.start()
        self.sender.report_health()
        self.sender.start()
        logger.info(
            "custom metering started: %s",
            ", ".join(self.settings.dimensions),
            extra={
                "event": "metering.started",
                "state_dir": str(self.settings.metering_state_dir),
                "http": None if self.http is None else _address(self.http.address),
                "statsd": None if self.statsd is None else _address(self.statsd.address),
            },
        )
        return self

    def record_usage(
        self, dimension: str, quantity: int = 1, *, tags: Mapping[str, Any] | None = None
    ) -> None:
        """Record usage into this metering's store (same rules as ``record_usage``)."""
        self.recorder.record(dimension, quantity, tags=tags)

    def stop(self, *, flush: bool = True, timeout: float | None = None) -> bool:
        """Stop ingestion and the sender; with ``flush``, send the unfinished hour too.

        ``timeout`` bounds the final sends (default ``MARKETPLACE_METERING_STOP_TIMEOUT``). Returns
        True when nothing is left unsent; what is left stays in the store for the next start.
        """
        if self._stopped:
            return True
        self._stopped = True
        self._stop_ingestion()
        self._stop.set()
        self.sender.join(timeout=30)
        done = True
        if flush:
            budget = self.settings.metering_stop_timeout if timeout is None else timeout
            done = self.sender.flush(budget)
            self._report_left(done)
        set_default_recorder(None)
        self.store.close()
        return done

    def _report_left(self, done: bool) -> None:
        """Say what stays in the store at stop, and why: three cases with different fates."""
        left = [e for e in self.store.backlog() if e.quantity > 0]
        where = self.settings.metering_state_dir
        carried = [e for e in left if e.state == "open"]
        if carried:
            # Its hour already holds a record (the startup zero, or the hour sent on stop): the
            # service takes no second one for that task, dimension and hour.
            first = min(e.hour for e in carried)
            logger.warning(
                "%s recorded in an hour already reported for this task (the startup record or "
                "an earlier report holds it) are carried into %s: they are reported only if a "
                "container of this task runs on %s after that hour begins; if the task ends now, "
                "they are never reported (docs/metering.md: When the container stops)",
                _units(carried),
                hour_text(first),
                where,
                extra={"event": "metering.left_at_stop", "reason": "hour_already_reported"},
            )
        held = [e for e in left if e.state == "held"]
        if held:
            logger.error(
                "%s held: MeterUsage refused their records (%s); kept in %s, never resent",
                _units(held),
                held[0].detail,
                where,
                extra={"event": "metering.held_at_stop", "reason": "refused"},
            )
        if not done:
            unsent = [e for e in left if e.state == "frozen"]
            logger.error(
                "stopping with usage not yet accepted by MeterUsage (%s: the send failed or did "
                "not fit in %s); it stays in %s and the next start on that directory in this "
                "task sends it; if the task ends now, it is never reported",
                _units(unsent) if unsent else "records",
                _env.METERING_STOP_TIMEOUT,
                where,
                extra={"event": "metering.unsent_at_stop", "reason": "send_failed"},
            )

    def _stop_ingestion(self) -> None:
        for server in (self.http, self.statsd):
            if server is not None:
                server.stop()
        self.http = self.statsd = None

    def _on_sent(self, record: FrozenRecord, record_id: str) -> None:
        if self._status is not None:
            self._status.record_success(registered_at=time.time(), next_attempt=None)

    def _on_health(self, health: SenderHealth) -> None:
        if self._status is not None:
            self._status.record_metering(health.to_json())
        oldest = health.oldest_unsent_hour
        if oldest is None or health.at - (oldest + HOUR) < BACKLOG_LIMIT_SECONDS:
            return
        reason = (
            f"usage of {hour_text(oldest)} is still unsent "
            f"and nears the service's 6-hour window (last error: {health.last_error})"
        )
        if self.settings.metering_backlog_policy == "stop" and self.on_backlog_stop is not None:
            stop, self.on_backlog_stop = self.on_backlog_stop, None  # once
            logger.error(
                "%s; stopping the command (policy 'stop')",
                reason,
                extra={"event": "metering.backlog"},
            )
            stop(reason)
        elif self._warned_hour != oldest:
            self._warned_hour = oldest
            logger.warning("%s", reason, extra={"event": "metering.backlog"})


def backlog_stopper(
    request_stop: Callable[[str], None], stopped_for: list[EntitlementError]
) -> Callable[[str], None]:
    """What policy ``stop`` does: note why (`run` then exits 69) and stop CMD."""

    def stop(reason: str) -> None:
        stopped_for.append(
            ServiceUnavailableError(
                f"MeterUsage backlog: {reason}", aws_error_code=None, attempts=0,
                hint=f"{_env.METERING_BACKLOG_POLICY}=stop stopped the command",
            )
        )  # fmt: skip
        request_stop(reason)

    return stop


def _units(entries: list[BacklogEntry]) -> str:
    """``"5 units of requests, 2 units of users"``: quantities summed per dimension."""
    totals: dict[str, int] = {}
    for entry in entries:
        totals[entry.stream] = totals.get(entry.stream, 0) + int(entry.quantity)
    return ", ".join(f"{quantity} units of {name}" for name, quantity in sorted(totals.items()))


def _address(address: tuple[str, int]) -> str:
    return f"{address[0]}:{address[1]}"


def start_for_run(
    gate: MeterUsageGate,
    entitlement: MeteringEntitlement,
    status: StatusFile | None,
    listeners: Listeners | None = None,
) -> Metering:
    """``run``: metering over the gate's store, serving the (already bound) ingestion endpoints."""
    assert gate.store is not None
    return Metering(
        gate.settings, gate.store, gate.client, entitlement, status=status, listeners=listeners
    ).start()


def start_metering(
    *,
    client: MeteringClient | None = None,
    environ: Mapping[str, str] | None = None,
    stop: threading.Event | None = None,
    **overrides: Any,
) -> Metering:
    """Pass the custom-pricing gate, then send this process's recorded usage in the background.

    For applications that meter from their own process rather than under ``run``. Settings as for
    ``check_entitlement`` (``MARKETPLACE_PRICING=custom``, ``MARKETPLACE_DIMENSIONS`` and
    ``MARKETPLACE_METERING_STATE_DIR`` are required). Raises the gate's EntitlementError on refusal.
    Afterwards ``record_usage`` in this process records into this store; call ``.stop()`` on
    shutdown to send the unfinished hour.
    """
    from marketplace_entitlement.entitlement._gate import settings_from_code  # noqa: PLC0415 (cycle)

    settings = settings_from_code(environ, overrides)  # values given in code are pinned
    if settings.pricing != "custom":
        raise ConfigurationError(
            f"start_metering needs {_env.PRICING}=custom", variable=_env.PRICING,
            hint="hourly-priced products register with check_entitlement instead",
        )  # fmt: skip
    if settings.metering_state_dir is None:
        raise ConfigurationError(
            f"start_metering needs {_env.METERING_STATE_DIR}", variable=_env.METERING_STATE_DIR,
            hint="a task- or pod-scoped volume, so that a restart keeps unsent usage",
        )  # fmt: skip
    gate = custom_gate(settings, client)
    assert gate.store is not None
    try:
        entitlement = gate.check(stop)
    except BaseException:
        gate.store.close()
        raise
    metering = Metering(settings, gate.store, gate.client, entitlement).start()
    set_default_recorder(metering.recorder)
    return metering

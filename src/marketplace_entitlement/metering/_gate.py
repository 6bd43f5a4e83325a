"""The startup gate of custom pricing: a real MeterUsage call is the entitlement check.

AWS raises entitlement errors only on a task's or pod's first MeterUsage call, so that call decides
whether CMD may start, with the same retry budget, exit codes and messages as RegisterUsage.

The startup record: a zero for the first declared dimension, stamped now (inside the current hour).
It is stored frozen (``ensure_record``) before it is sent, so:

- no usage is lost or counted twice: that dimension's usage of the current hour, which the service
  will no longer accept for this task once the zero is recorded, is carried into the next hour by
  the store like any late usage;
- a container restarted inside the same task and hour sends the stored request again, byte for
  byte (an identical request: the service answers with the same MeteringRecordId), not a new one
  that would get ``DuplicateRequestException``. If that dimension's hour was already reported with
  another quantity (the partial hour sent on SIGTERM), the stored record is that one, sent again.

A stored record is reused only when it is the request this configuration would send (product code,
dimension, hour); a state directory holding another product's usage is refused (``bind_product``,
exit 78 naming ``MARKETPLACE_METERING_STATE_DIR``), so the store's streams never mix products. A
startup record the service refuses for good (exit 77 or 78) is held, never sent later by the sender.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar, cast

from marketplace_entitlement import _env
from marketplace_entitlement._client import LazyClient, MeteringClient
from marketplace_entitlement._errors import (
    ConfigurationError,
    EntitlementError,
    ServiceConfigurationError,
)
from marketplace_entitlement._exit_codes import CONFIGURATION, NOT_ENTITLED
from marketplace_entitlement._retry import backoff_delays, call_with_retries
from marketplace_entitlement._settings import Settings
from marketplace_entitlement.entitlement._gate import Entitlement, _iso, _utc
from marketplace_entitlement.metering._payload import meter_usage_payload
from marketplace_entitlement.metering._sender import LEASE_SECONDS, MeterUsageClient
from marketplace_entitlement.store import UsageStore, hour_of

logger = logging.getLogger(__name__)


PRODUCT_FILE = "product-code"  # in the state directory: the product whose usage it holds


def _stored_product(payload: str | None) -> str | None:
    if not payload:
        return None
    product = json.loads(payload).get("ProductCode")
    return product if isinstance(product, str) else None


def bind_product(state_dir: Path, store: UsageStore, product_code: str) -> None:
    """Refuse a state directory that holds another product's usage; else mark it as this one's.

    The store's streams are dimensions, not (product, dimension): usage of two products in one
    directory would be sent under one product code. The product is kept in ``product-code`` next to
    the store (for a store written before that file existed: the product of its records).
    """
    marker = Path(state_dir) / PRODUCT_FILE
    variable = _env.METERING_STATE_DIR
    try:
        bound: str | None = marker.read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        bound = None
    except OSError as error:
        raise ConfigurationError(
            f"{variable}={str(state_dir)!r}: cannot read {PRODUCT_FILE}: {error}", variable=variable
        ) from error
    if bound is None:
        stored = (_stored_product(r.payload) for r in store.records())
        others = sorted({code for code in stored if code is not None and code != product_code})
        bound = others[0] if others else None
    if bound is not None and bound != product_code:
        raise ConfigurationError(
            f"{variable}={str(state_dir)!r} holds usage of product {bound}, not of "
            f"{product_code}: a state directory serves one product",
            variable=variable,
            hint="give each product (and each task or pod) its own state directory",
        )
    if not marker.exists():
        try:
            temporary = marker.with_name(f".{PRODUCT_FILE}.{os.getpid()}")
            temporary.write_text(product_code + "\n", encoding="utf-8")
            os.replace(temporary, marker)
        except OSError as error:
            raise ConfigurationError(
                f"{variable}={str(state_dir)!r} cannot hold the usage store: {error}",
                variable=variable,
                hint="point it at a writable, task- or pod-scoped volume (ECS task volume, emptyDir)",
            ) from error


def _same_request(payload: str, product_code: str, dimension: str, hour: int) -> bool:
    """Whether a stored startup record is the request this configuration would send."""
    request = json.loads(payload)
    timestamp = request.get("Timestamp")
    return (
        request.get("ProductCode") == product_code
        and request.get("UsageDimension") == dimension
        and isinstance(timestamp, int)
        and hour_of(timestamp) == hour
    )


@dataclass(frozen=True)
class MeteringEntitlement(Entitlement):
    """The startup MeterUsage was accepted: the buyer is entitled (custom pricing)."""

    signed: ClassVar[bool] = False  # MeterUsage answers with a record id, not a signed token

    dimension: str = ""
    hour: int = 0
    metering_record_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The entitlement as a JSON-ready dict (what ``check`` prints in custom pricing)."""
        return {
            "entitled": True,
            "pricing": "custom",
            "product_code": self.product_code,
            "registered_at": _iso(self.registered_at),
            "dimension": self.dimension,
            "hour": _iso(_utc(self.hour)),
            "metering_record_id": self.metering_record_id,
        }


class MeterUsageGate:
    """Sends the startup record (stored first when a store is given) and decides."""

    def __init__(
        self,
        settings: Settings,
        client: MeteringClient | None = None,
        *,
        store: UsageStore | None = None,
        retry_delays: Callable[[], Iterator[float]] = backoff_delays,
    ) -> None:
        self.settings = settings
        self.client = LazyClient(settings, client)
        self.store = store
        self._retry_delays = retry_delays

    def check(
        self, stop: threading.Event | None = None, *, timeout: float | None = None
    ) -> MeteringEntitlement:
        """Send the startup MeterUsage (retrying as the retry policy decides); return or raise."""
        settings = self.settings
        now = time.time()
        hour = hour_of(now)
        dimension = settings.dimensions[0]
        zero = {"": Decimal(0)}
        payload = meter_usage_payload(settings.product_code, dimension, int(now), zero)
        owner = f"gate-{os.getpid()}-{secrets.token_hex(4)}"
        record_id: int | None = None
        if self.store is not None:
            record = self.store.ensure_record(dimension, hour, allocations=zero, payload=payload)
            if not _same_request(record.payload, settings.product_code, dimension, hour):
                raise ConfigurationError(
                    f"{_env.METERING_STATE_DIR} holds a startup record of this hour that is not "
                    f"this configuration's request ({record.payload}); it is not sent again",
                    variable=_env.METERING_STATE_DIR,
                    hint="give each product (and each task or pod) its own state directory",
                )
            payload = record.payload
            if self.store.claim_record(record.id, owner=owner, lease_seconds=LEASE_SECONDS):
                record_id = record.id
        request = json.loads(payload)
        client = cast("MeterUsageClient", self.client.get())
        budget = settings.register_timeout if timeout is None else timeout
        try:
            response = call_with_retries(
                lambda: client.meter_usage(**request),
                timeout=budget,
                stop=stop or threading.Event(),
                delays=self._retry_delays(),
                operation="MeterUsage",
            )
            answer: str | None = str(response.get("MeteringRecordId") or "") or None
        except ServiceConfigurationError as error:
            if error.aws_error_code != "DuplicateRequestException":
                self._release(record_id, owner, error)
                raise
            # This task already reported the dimension's hour with another quantity: it passed the
            # entitlement check then (refusals come only on a task's first call).
            answer = None
            if record_id is not None and self.store is not None:
                self.store.carry(record_id, owner=owner, to_hour=hour, reason=error.message)
                record_id = None
        except EntitlementError as error:
            self._release(record_id, owner, error)
            raise
        if record_id is not None and self.store is not None:
            self.store.mark_sent(record_id, owner=owner, detail=answer or "")
        logger.info(
            "entitled to %s (custom pricing: startup MeterUsage of %s accepted)",
            settings.product_code,
            dimension,
            extra={
                "event": "entitlement.granted",
                "product_code": settings.product_code,
                "pricing": "custom",
                "metering_record_id": answer,
            },
        )
        return MeteringEntitlement(
            product_code=settings.product_code,
            public_key_version=settings.public_key_version,
            nonce="",
            issued_at=_utc(now),
            registered_at=_utc(time.time()),
            verified=False,
            token="",
            dimension=dimension,
            hour=hour,
            metering_record_id=answer,
        )

    def _release(self, record_id: int | None, owner: str, error: EntitlementError) -> None:
        """Refused for good (77/78): hold the record, never sent later; else let a retry take it."""
        if record_id is None or self.store is None:
            return
        if error.exit_code in (CONFIGURATION, NOT_ENTITLED):
            self.store.hold(record_id, owner=owner, reason=f"startup MeterUsage refused: {error}")
        else:
            self.store.release(record_id, owner=owner)

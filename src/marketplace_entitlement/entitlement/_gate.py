"""The one code path that registers with a fresh nonce, verifies the answer and decides.

``check`` and ``run`` on the command line, ``check_entitlement``/``require_entitlement`` for
applications, and background re-registration all go through ``Gate.check``.
"""

from __future__ import annotations

import logging
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, NoReturn

from marketplace_entitlement._client import LazyClient, MeteringClient
from marketplace_entitlement._errors import EntitlementError
from marketplace_entitlement._retry import (
    IncompleteResponseError,
    backoff_delays,
    call_with_retries,
)
from marketplace_entitlement._settings import Settings, load_settings
from marketplace_entitlement.entitlement._verify import (
    check_claims,
    read_unverified_claims,
    verify_signature,
)

logger = logging.getLogger(__name__)

NONCE_BYTES = 24  # 32 URL-safe characters, well inside the 255 the API allows


@dataclass(frozen=True)
class Entitlement:
    """A successful registration: what was registered, when, and whether its token was verified."""

    product_code: str
    public_key_version: int
    nonce: str
    issued_at: datetime
    registered_at: datetime
    verified: bool
    token: str = field(repr=False)
    public_key_rotation_timestamp: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        """The entitlement as a JSON-ready dict (what ``check`` prints)."""
        return {
            "entitled": True,
            "product_code": self.product_code,
            "public_key_version": self.public_key_version,
            "nonce": self.nonce,
            "issued_at": _iso(self.issued_at),
            "registered_at": _iso(self.registered_at),
            "verified": self.verified,
            "public_key_rotation_timestamp": _iso(self.public_key_rotation_timestamp),
            "signature": self.token,
        }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


class Gate:
    """Registers and verifies with one client and one set of settings; safe to call from threads."""

    def __init__(
        self,
        settings: Settings,
        client: MeteringClient | None = None,
        *,
        retry_delays: Callable[[], Iterator[float]] = backoff_delays,
    ) -> None:
        self.settings = settings
        self._client = LazyClient(settings, client)
        self._retry_delays = retry_delays

    def check(
        self, stop: threading.Event | None = None, *, timeout: float | None = None
    ) -> Entitlement:
        """Register with a fresh nonce (retrying as ``_register`` decides), verify, return or raise.

        ``timeout`` overrides the retry budget (default: the register timeout setting).
        """
        settings = self.settings
        nonce = secrets.token_urlsafe(NONCE_BYTES)
        stop_event = stop or threading.Event()

        client = self._client.get()

        def call() -> dict[str, Any]:
            response = client.register_usage(
                ProductCode=settings.product_code,
                PublicKeyVersion=settings.public_key_version,
                Nonce=nonce,
            )
            if not isinstance(response, dict) or "Signature" not in response:
                # botocore turns an unparsable 200 body into an empty result: a server fault.
                raise IncompleteResponseError("RegisterUsage answered without a Signature")
            return response

        budget = settings.register_timeout if timeout is None else timeout
        response = call_with_retries(
            call, timeout=budget, stop=stop_event, delays=self._retry_delays()
        )
        return self._verify(response, nonce)

    def _verify(self, response: Mapping[str, Any], nonce: str) -> Entitlement:
        settings = self.settings
        token = response.get("Signature")
        now = time.time()
        sent = {"product_code": settings.product_code, "nonce": nonce}
        version = settings.public_key_version
        if settings.verify_signature and settings.public_key is not None:
            claims = verify_signature(
                str(token or ""), settings.public_key, **sent, public_key_version=version, now=now
            )
        else:
            logger.warning(
                "signature verification is OFF (MARKETPLACE_VERIFY_SIGNATURE=false): this "
                "registration's token is not proven to come from AWS",
                extra={"event": "verification.disabled"},
            )
            raw = read_unverified_claims(str(token or ""))
            claims = check_claims(raw, **sent, public_key_version=version, now=now)
        rotation = response.get("PublicKeyRotationTimestamp")
        rotation_at = _as_datetime(rotation)
        if rotation_at is not None:
            logger.warning(
                "public key version %d expires at %s: ask AWS Marketplace for the new key, then "
                "set MARKETPLACE_PUBLIC_KEY_VERSION and MARKETPLACE_PUBLIC_KEY(_FILE) to it",
                settings.public_key_version,
                _iso(rotation_at),
                extra={
                    "event": "public_key.rotation",
                    "public_key_version": settings.public_key_version,
                    "rotation_timestamp": _iso(rotation_at),
                },
            )
        entitlement = Entitlement(
            product_code=claims.product_code,
            public_key_version=claims.public_key_version,
            nonce=claims.nonce,
            issued_at=_utc(claims.issued_at),
            registered_at=_utc(now),
            verified=bool(settings.verify_signature),
            token=str(token),
            public_key_rotation_timestamp=rotation_at,
        )
        logger.info(
            "entitled to %s (public key version %d, %s)",
            entitlement.product_code,
            entitlement.public_key_version,
            "verified" if entitlement.verified else "NOT verified",
            extra={
                "event": "entitlement.granted",
                "product_code": entitlement.product_code,
                "verified": entitlement.verified,
            },
        )
        return entitlement


def _as_datetime(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, (int, float)):
        return _utc(float(value))
    return None


def check_entitlement(
    *,
    client: MeteringClient | None = None,
    environ: Mapping[str, str] | None = None,
    stop: threading.Event | None = None,
    **overrides: Any,
) -> Entitlement:
    """Register, verify and return the Entitlement, or raise an EntitlementError.

    ``overrides`` are settings by attribute name (``product_code="..."``, ``public_key=pem``,
    ``register_timeout="5m"``); they win over the environment (``environ``, default ``os.environ``).
    ``client`` injects a botocore ``meteringmarketplace`` client; ``stop`` ends retry waits early.
    """
    settings = load_settings(environ, **overrides)
    if settings.pricing == "custom":  # the startup call is MeterUsage (docs/metering.md)
        from marketplace_entitlement.metering._runtime import custom_gate  # noqa: PLC0415

        return custom_gate(settings, client).check(stop)
    return Gate(settings, client).check(stop)


def require_entitlement(
    *,
    client: MeteringClient | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Entitlement:
    """Like ``check_entitlement``, but on refusal log one actionable line and exit the process.

    The exit code is the one CONTRACT.md assigns to the failure (65, 69, 77 or 78).
    """
    try:
        return check_entitlement(client=client, environ=environ, **overrides)
    except EntitlementError as error:
        _exit_refused(error)


def _exit_refused(error: EntitlementError) -> NoReturn:
    logger.error(
        "entitlement check failed: %s",
        error.refusal_line(),
        extra={"event": "entitlement.refused", "exit_code": error.exit_code},
    )
    sys.exit(error.exit_code)

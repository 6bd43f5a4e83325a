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
from typing import Any, ClassVar, NoReturn

from marketplace_entitlement._client import LazyClient, MeteringClient, endpoint_url
from marketplace_entitlement._errors import ConfigurationError, EntitlementError
from marketplace_entitlement._retry import (
    IncompleteResponseError,
    backoff_delays,
    call_with_retries,
)
from marketplace_entitlement._settings import Settings, load_settings
from marketplace_entitlement.entitlement._pin import pin_from_code
from marketplace_entitlement.entitlement._verify import (
    check_claims,
    prepare_verifier,
    read_unverified_claims,
    verifier_ready,
    verify_signature,
)

logger = logging.getLogger(__name__)

NONCE_BYTES = 24  # 32 URL-safe characters, well inside the 255 the API allows
# The last attempt, made at the deadline, still gets this long: the bound is budget + 1 s.
MIN_ATTEMPT_SECONDS = 1.0


class AttemptTimeoutError(Exception):
    """One RegisterUsage attempt outlived the registration's deadline (a stalled or trickled answer).

    The retry policy treats it like any network failure: retryable within the budget.
    """


def call_within(call: Callable[[], dict[str, Any]], seconds: float) -> dict[str, Any]:
    """Run ``call`` in a daemon thread and wait at most ``seconds`` for its result.

    On time-out the attempt is abandoned (its thread ends when botocore's own timeouts or the
    server end it; its answer is ignored) and AttemptTimeoutError is raised.
    """
    outcome: list[tuple[bool, Any]] = []
    done = threading.Event()

    def attempt() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as error:  # noqa: BLE001  (handed to the waiting thread, raised there)
            outcome.append((False, error))
        finally:
            done.set()

    threading.Thread(target=attempt, name="marketplace-register-attempt", daemon=True).start()
    if not done.wait(seconds):
        raise AttemptTimeoutError(
            f"RegisterUsage did not complete within {seconds:.1f}s (a stalled or trickled answer)"
        )
    succeeded, value = outcome[0]
    if succeeded:
        return value  # type: ignore[no-any-return]
    raise value


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

    # Whether this kind of entitlement rests on a signed token that can be verified (RegisterUsage);
    # a custom-pricing entitlement (the startup MeterUsage) has none, so there is nothing unverified.
    signed: ClassVar[bool] = True

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
        """Register with a fresh nonce (retrying by the shared retry policy), verify, return or raise.

        ``timeout`` overrides the retry budget (default: the register timeout setting).
        """
        nonce = secrets.token_urlsafe(NONCE_BYTES)
        stop_event = stop or threading.Event()

        response = self._register(nonce, stop_event, timeout)
        return self._verify(response, nonce)

    def _register(
        self, nonce: str, stop_event: threading.Event, timeout: float | None
    ) -> dict[str, Any]:
        settings = self.settings
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
        # PyJWT's modules load in a thread while RegisterUsage is in flight: the main thread then
        # waits on the network, not on the GIL (bench/entrypoint.py --latency measures it).
        preparing = None
        if not verifier_ready():
            preparing = threading.Thread(target=prepare_verifier, name="marketplace-verifier")
            preparing.start()
        deadline = time.monotonic() + budget

        def bounded_call() -> dict[str, Any]:
            # The budget bounds the whole registration on the wall clock: botocore's read timeout
            # is per socket read, so an answer trickled a byte at a time would never end it.
            return call_within(call, max(deadline - time.monotonic(), MIN_ATTEMPT_SECONDS))

        try:
            return call_with_retries(
                bounded_call,
                timeout=budget,
                stop=stop_event,
                delays=self._retry_delays(),
                endpoint=endpoint_url(client),
            )
        finally:
            if preparing is not None:
                preparing.join()  # never left running, whatever the outcome

    def _verify(self, response: Mapping[str, Any], nonce: str) -> Entitlement:
        settings = self.settings
        token = response.get("Signature")
        now = time.time()
        sent = {"product_code": settings.product_code, "nonce": nonce}
        version = settings.public_key_version
        if settings.verify_signature:
            if settings.public_key is None:  # Settings built by hand, not by load_settings
                raise ConfigurationError(
                    "no public key to verify the Signature with; refusing (fail closed)",
                    variable="MARKETPLACE_PUBLIC_KEY_FILE",
                    hint="configure the product's public key",
                )
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
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return _utc(float(value))
        except (OverflowError, ValueError, OSError):  # NaN, infinity, beyond year 9999
            return None
    return None


def settings_from_code(environ: Mapping[str, str] | None, overrides: dict[str, Any]) -> Settings:
    """Settings for the import API: the product code and key given in code are a pin."""
    remaining = dict(overrides)
    pin = pin_from_code(remaining)
    return load_settings(environ, pin=pin, **remaining)


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
    A product code, public key or key version given here is *pinned*: the environment may repeat
    it but not contradict it (ConfigurationError), and with a key given here verification cannot
    be turned off. ``client`` injects a botocore ``meteringmarketplace`` client; ``stop`` ends
    retry waits early.
    """
    settings = settings_from_code(environ, overrides)
    if settings.pricing == "custom":  # the startup call is MeterUsage (docs/metering.md)
        from marketplace_entitlement.metering._runtime import custom_gate  # noqa: PLC0415

        return custom_gate(settings, client).check(stop)
    return Gate(settings, client).check(stop)


def require_entitlement(
    *,
    client: MeteringClient | None = None,
    environ: Mapping[str, str] | None = None,
    allow_unverified: bool = False,
    **overrides: Any,
) -> Entitlement:
    """Like ``check_entitlement``, but on refusal log one actionable line and exit the process.

    The exit code is the documented one for the failure (65, 69, 77 or 78; see docs/exit-codes.md).
    An entitlement whose token was not verified (``MARKETPLACE_VERIFY_SIGNATURE=false``) is refused
    with 78 unless the calling code passes ``allow_unverified=True`` (for local development). In
    custom pricing there is no token (the startup MeterUsage answers with a record id), so nothing
    is refused for being unverified.
    """
    try:
        entitlement = check_entitlement(client=client, environ=environ, **overrides)
        if entitlement.signed and not entitlement.verified and not allow_unverified:
            raise ConfigurationError(
                "refused an unverified entitlement: signature verification is off "
                "(MARKETPLACE_VERIFY_SIGNATURE=false) and the application does not allow it",
                variable="MARKETPLACE_VERIFY_SIGNATURE",
                hint="unset MARKETPLACE_VERIFY_SIGNATURE and configure the product's public key; "
                "for local development the application may pass allow_unverified=True",
            )
    except EntitlementError as error:
        _exit_refused(error)
    return entitlement


def _exit_refused(error: EntitlementError) -> NoReturn:
    logger.error(
        "entitlement check failed: %s",
        error.refusal_line(),
        extra={"event": "entitlement.refused", "exit_code": error.exit_code},
    )
    sys.exit(error.exit_code)

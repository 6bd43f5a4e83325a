"""The one retry policy for every Metering Service call: jittered backoff inside a monotonic deadline.

RegisterUsage at startup, MeterUsage, BatchMeterUsage and ResolveCustomer all go through
``call_with_retries``. Which failures are retried, and which end the attempt with which error, is
decided here and only here (``classify``). Waits are on a ``threading.Event`` so that a shutdown
request ends them at once.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from marketplace_entitlement import _env
from marketplace_entitlement._errors import (
    ConfigurationError,
    EntitlementError,
    ExpiredRegistrationTokenError,
    InvalidRegistrationTokenError,
    NotEntitledError,
    RegistrationInterrupted,
    ServiceConfigurationError,
    ServiceUnavailableError,
)

logger = logging.getLogger(__name__)

# The schedule: waits grow 2.5 s, 3.75 s, 5.6 s, ... up to 60 s, each drawn uniformly from its upper
# half ("equal jitter"). bench/herd.py measures this against full jitter on a herd of containers
# sharing one account's quota; the README ("Benchmarks") gives the figures and why equal jitter won.
BACKOFF_BASE_SECONDS = 2.5
BACKOFF_FACTOR = 1.5
BACKOFF_CAP_SECONDS = 60.0

RETRYABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "InternalServiceErrorException",
        "InternalFailure",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)

_EMULATOR_HINT = "use `marketplace-entitlement emulator` to test outside AWS"

_NOT_SUBSCRIBED_HINT = (
    "the buyer's AWS account has no active subscription to this product; subscribe to it in AWS "
    "Marketplace, or check MARKETPLACE_PRODUCT_CODE"
)

# Terminal service errors: code -> (exception class, variable at fault, hint).
_TERMINAL: Mapping[str, tuple[str, str | None, str]] = {
    "CustomerNotEntitledException": ("not_entitled", None, _NOT_SUBSCRIBED_HINT),
    # The API reference's prose also names CustomerNotSubscribedException; treat it alike.
    "CustomerNotSubscribedException": ("not_entitled", None, _NOT_SUBSCRIBED_HINT),
    "PlatformNotSupportedException": (
        "not_entitled",
        None,
        f"RegisterUsage only works inside Amazon ECS, EKS or Fargate; {_EMULATOR_HINT}",
    ),
    "InvalidProductCodeException": (
        "config",
        _env.PRODUCT_CODE,
        "check MARKETPLACE_PRODUCT_CODE against your listing in the AWS Marketplace Management "
        "Portal",
    ),
    "InvalidRegionException": (
        "config",
        _env.AWS_REGION,
        "RegisterUsage must be called in a supported region; check AWS_REGION",
    ),
    "InvalidPublicKeyVersionException": (
        "config",
        _env.PUBLIC_KEY_VERSION,
        "set MARKETPLACE_PUBLIC_KEY_VERSION to a key version AWS Marketplace issued for this "
        "product",
    ),
    "DisabledApiException": (
        "config",
        None,
        "the Metering API is disabled for this account or product; contact AWS Marketplace Seller "
        "Operations",
    ),
    "AccessDeniedException": ("config", None, "{access_denied}"),
    # MeterUsage (custom pricing): the dimension is not one of the listing's, or the call went to
    # another region than the task's.
    "InvalidUsageDimensionException": (
        "config",
        _env.DIMENSIONS,
        "MARKETPLACE_DIMENSIONS must list the dimension API names of your listing exactly",
    ),
    "InvalidEndpointRegionException": (
        "config",
        _env.AWS_REGION,
        "MeterUsage must be called in the region the task or pod runs in; check AWS_REGION",
    ),
}

# The codes of refused AWS credentials (the metering sender also retries these later).
CREDENTIAL_CODES = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "ExpiredTokenException",
        "MissingAuthenticationTokenException",
        "IncompleteSignature",
    }
)
_CREDENTIAL_HINT = (
    "the AWS credentials were refused; run with an ECS task role or an EKS IRSA service account "
    "(AWS Marketplace metering does not accept node roles or long-term keys)"
)
# Where botocore's default credential chain looks, in its order (what "none found" means).
CREDENTIAL_SOURCES = (
    "environment variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)",
    "the shared credentials and config files (~/.aws/credentials, ~/.aws/config, AWS_PROFILE)",
    "web identity (AWS_ROLE_ARN with AWS_WEB_IDENTITY_TOKEN_FILE: EKS IRSA)",
    "the container credentials endpoint (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or _FULL_URI: "
    "the ECS task role)",
    "the EC2 instance metadata service",
)
_NO_CREDENTIALS_HINT = (
    "on ECS set the task definition's taskRoleArn; on EKS annotate the pod's service account "
    "with an IRSA role (eks.amazonaws.com/role-arn); against the local emulator any "
    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY will do"
)


_RESOLVE_HINT = (
    "the buyer's registration token was refused; send the buyer back to the product's page in AWS "
    "Marketplace to start the sign-up again"
)


def _access_denied_hint(operation: str) -> str:
    policy = (
        "AWSMarketplaceMeteringRegisterUsage"
        if operation == "RegisterUsage"
        else "AWSMarketplaceMeteringFullAccess"
    )
    return (
        f"the role lacks aws-marketplace:{operation}; attach the AWS managed policy {policy} to "
        "the ECS task role or the IRSA role"
    )


class IncompleteResponseError(Exception):
    """The service answered 200 without the member we need (a broken or truncated body)."""


@dataclass(frozen=True)
class Retryable:
    """A failure worth another attempt: its error code (or exception name) and message."""

    code: str
    message: str


def classify(error: Exception, operation: str = "RegisterUsage") -> Retryable | EntitlementError:
    """Decide whether a failed call of ``operation`` is retried, or which error ends it."""
    from botocore import exceptions as bx  # noqa: PLC0415  (botocore is imported lazily)

    if isinstance(error, bx.ClientError):
        details = error.response.get("Error", {})
        code = str(details.get("Code", "")) or "Unknown"
        message = str(details.get("Message", "")) or str(error)
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        return _classify_service_error(code, message, status, operation)
    if isinstance(error, bx.NoCredentialsError):
        return ConfigurationError(
            f"no AWS credentials found, so no {operation} request was sent; botocore looked in "
            + "; ".join(CREDENTIAL_SOURCES),
            hint=_NO_CREDENTIALS_HINT,
        )
    if isinstance(error, bx.PartialCredentialsError):
        return ConfigurationError(
            f"incomplete AWS credentials, so no {operation} request was sent: {error}",
            hint=_NO_CREDENTIALS_HINT,
        )
    retryable_botocore = (bx.HTTPClientError, bx.ConnectionError, bx.CredentialRetrievalError)
    if isinstance(error, bx.BotoCoreError) and not isinstance(error, retryable_botocore):
        return ConfigurationError(f"{operation} could not be sent: {error}")
    # The network, or an answer botocore could not make sense of (its ResponseParserError, a body
    # of the wrong shape, an unparsable timestamp): the service misbehaved; retry.
    return Retryable(type(error).__name__, str(error) or type(error).__name__)


def request_was_sent(error: Exception) -> bool:
    """Tell whether a failed call reached the network: botocore refuses some before sending.

    Missing or incomplete credentials, parameters that fail botocore's own validation and similar
    client-side errors are raised before any request leaves; such a call is not an attempt.
    """
    from botocore import exceptions as bx  # noqa: PLC0415  (botocore is imported lazily)

    if isinstance(error, bx.ClientError):
        return True
    sent_errors = (bx.HTTPClientError, bx.ConnectionError, bx.CredentialRetrievalError)
    return not isinstance(error, bx.BotoCoreError) or isinstance(error, sent_errors)


def _classify_service_error(
    code: str, message: str, status: int, operation: str = "RegisterUsage"
) -> Retryable | EntitlementError:
    if code in RETRYABLE_CODES or status >= 500:
        return Retryable(code, message)
    text = f"{operation} refused: {code}: {message}"
    if operation == "ResolveCustomer":
        refused = _refused_token(code, text, status)
        if refused is not None:
            return refused
    terminal = _TERMINAL.get(code)
    if terminal is not None:
        kind, variable, hint = terminal
        hint = hint.replace("{access_denied}", _access_denied_hint(operation))
        if kind == "not_entitled":
            return NotEntitledError(text, aws_error_code=code, hint=hint)
        return ServiceConfigurationError(text, aws_error_code=code, variable=variable, hint=hint)
    if code in CREDENTIAL_CODES:
        return ServiceConfigurationError(text, aws_error_code=code, hint=_CREDENTIAL_HINT)
    return ServiceConfigurationError(
        text, aws_error_code=code, hint="an error this package does not expect; check the settings"
    )


def _refused_token(code: str, text: str, status: int) -> EntitlementError | None:
    """ResolveCustomer's answers about the registration token (None: another failure)."""
    if code == "InvalidTokenException":
        return InvalidRegistrationTokenError(text, aws_error_code=code, hint=_RESOLVE_HINT)
    # Expired AWS credentials share the code; they come with 403, the expired registration token
    # with ResolveCustomer's modelled 400.
    if code == "ExpiredTokenException" and status != 403:
        return ExpiredRegistrationTokenError(text, aws_error_code=code, hint=_RESOLVE_HINT)
    return None


def backoff_delays(
    *,
    base: float = BACKOFF_BASE_SECONDS,
    factor: float = BACKOFF_FACTOR,
    cap: float = BACKOFF_CAP_SECONDS,
    jitter: str = "equal",
    rng: random.Random | None = None,
) -> Iterator[float]:
    """Yield the waits between attempts: ``backoff.expo`` values, ``equal`` or ``full`` jitter."""
    import backoff  # noqa: PLC0415  (only on a retry: it imports asyncio, ~3 ms on every start)

    draw = rng or random.SystemRandom()
    values = backoff.expo(base=factor, factor=base, max_value=cap)
    next(values)  # backoff's generators are primed with one bare yield
    for value in values:
        if jitter == "full":
            yield draw.uniform(0, value)
        else:
            yield value / 2 + draw.uniform(0, value / 2)


def call_with_retries(
    call: Callable[[], dict[str, Any]],
    *,
    timeout: float,
    stop: threading.Event,
    delays: Iterator[float] | None = None,
    clock: Callable[[], float] = time.monotonic,
    operation: str = "RegisterUsage",
    endpoint: str | None = None,
    budget_name: str | None = None,
) -> dict[str, Any]:
    """Call ``call`` until it succeeds, fails terminally, the deadline passes, or ``stop`` is set.

    Raises the terminal EntitlementError, ServiceUnavailableError when ``timeout`` seconds
    (monotonic) pass with only retryable failures, or RegistrationInterrupted when ``stop`` is set.
    Every attempt and its outcome is one log event; a call refused before anything was sent (no
    credentials) is no attempt and is not logged as one. ``endpoint`` (the client's URL) and
    ``budget_name`` (the setting that gave ``timeout``; default MARKETPLACE_REGISTER_TIMEOUT for
    RegisterUsage) make the retry warnings say where the calls go and how much time is left.
    """
    schedule = delays if delays is not None else backoff_delays()
    deadline = clock() + timeout
    log = _AttemptLog(operation, clock, endpoint, budget_name or _budget_name(operation))
    attempt = 0
    last: Retryable | None = None
    while True:
        if stop.is_set():
            raise RegistrationInterrupted(f"shutdown requested before {operation} finished")
        started = clock()
        try:
            response = call()
        except Exception as error:  # noqa: BLE001  (classify decides; unknown answers are retried)
            outcome = classify(error, operation)
            sent = request_was_sent(error)
        else:
            attempt += 1
            log.attempt(attempt, "success", started)
            return response
        if isinstance(outcome, EntitlementError):
            if sent:
                attempt += 1
                log.attempt(attempt, "refused", started, code=_code_of(outcome))
            raise outcome
        attempt += 1
        last = outcome
        remaining = deadline - clock()
        if remaining <= 0:
            log.attempt(attempt, "retryable", started, failure=outcome)
            break
        # The last wait is cut to the deadline, and one last attempt is made there.
        wait = min(next(schedule), remaining)
        log.attempt(
            attempt, "retryable", started, failure=outcome, next_wait=wait, left=remaining - wait
        )
        if stop.wait(wait):
            raise RegistrationInterrupted(f"shutdown requested while waiting to retry {operation}")
    where = f" at {endpoint}" if endpoint else ""
    raise ServiceUnavailableError(
        f"{operation} kept failing{where} for {format_duration(timeout)} ({attempt} attempts; "
        f"last: {last.code}: {last.message})",
        aws_error_code=last.code,
        attempts=attempt,
        hint=f"the Metering Service was throttling or unreachable throughout {log.budget_name}; "
        f"check network egress to metering.marketplace and the account's {operation} quota",
    )


def _code_of(error: EntitlementError) -> str:
    return str(getattr(error, "aws_error_code", None) or type(error).__name__)


def _budget_name(operation: str) -> str:
    return _env.REGISTER_TIMEOUT if operation == "RegisterUsage" else "the retry budget"


def format_duration(seconds: float) -> str:
    """``1671.2`` -> ``27m51s``; ``4.1`` -> ``4.1s``: a duration as the settings spell them."""
    if seconds < 60:
        return f"{seconds:.1f}s".replace(".0s", "s")
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = ((hours, "h"), (minutes, "m"), (secs, "s"))
    return "".join(f"{value}{unit}" for value, unit in parts if value)


@dataclass(frozen=True)
class _AttemptLog:
    """One log event per attempt of one call: what happened, where, and how much time is left."""

    operation: str
    clock: Callable[[], float]
    endpoint: str | None
    budget_name: str

    def attempt(
        self,
        number: int,
        outcome: str,
        started: float,
        *,
        code: str | None = None,
        failure: Retryable | None = None,
        next_wait: float | None = None,
        left: float | None = None,
    ) -> None:
        level = logging.INFO if outcome == "success" else logging.WARNING
        code = code or (failure.code if failure else None)
        fields: dict[str, Any] = {
            "event": f"{_event_prefix(self.operation)}.attempt",
            "attempt": number,
            "outcome": outcome,
            "duration_ms": round((self.clock() - started) * 1000, 1),
        }
        if self.endpoint:
            fields["endpoint"] = self.endpoint
        if code is not None:
            fields["error_code"] = code
        text = f"{self.operation} attempt {number}: {outcome}"
        if failure is not None:
            text = f"{self.operation} attempt {number}: {failure.code}: {failure.message}"
            if self.endpoint and self.endpoint not in failure.message:
                text += f" (endpoint {self.endpoint})"
        elif code:
            text += f" ({code})"
        if next_wait is not None:
            fields["next_attempt_in_s"] = round(next_wait, 3)
            text += f"; retrying in {format_duration(next_wait)}"
        if left is not None:
            fields["budget_left_s"] = round(left, 1)
            if left >= 0.05:
                text += f", {format_duration(left)} of {self.budget_name} left"
            else:
                text += f", the last attempt at the end of {self.budget_name}"
        elif outcome == "retryable":
            text += f"; {self.budget_name} used up"
        logger.log(level, text, extra=fields)


def _event_prefix(operation: str) -> str:
    """``RegisterUsage`` -> ``register_usage``: the log event names of one operation."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in operation).lstrip("_")

"""ResolveCustomer: turn the registration token a buyer's browser posted into a ``SaasCustomer``."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from marketplace_entitlement._client import LazyClient, MeteringClient
from marketplace_entitlement._errors import InvalidRegistrationTokenError
from marketplace_entitlement._retry import call_with_retries, format_duration
from marketplace_entitlement._settings import Settings, load_settings
from marketplace_entitlement.saas._customer import SaasCustomer

# A buyer's browser is waiting on the fulfillment page: retry throttling and server errors for a
# short while only, then let the page say "try again".
RESOLVE_TIMEOUT_SECONDS = 20.0


class CustomerResolver:
    """Resolves registration tokens with one (lazily created, thread-safe) botocore client."""

    def __init__(
        self,
        *,
        client: MeteringClient | Any | None = None,
        settings: Settings | None = None,
        environ: Mapping[str, str] | None = None,
        timeout: float = RESOLVE_TIMEOUT_SECONDS,
    ) -> None:
        self._settings = settings or load_settings(environ, for_saas=True)
        self._client = LazyClient(self._settings, client)
        self._timeout = timeout

    def resolve(self, token: str, *, stop: threading.Event | None = None) -> SaasCustomer:
        """Call ResolveCustomer for ``token``; raise the package's errors, never botocore's.

        ``InvalidRegistrationTokenError`` / ``ExpiredRegistrationTokenError`` (both
        ``RegistrationTokenError``) for a refused token; ``ServiceUnavailableError`` when throttling
        or server errors last for the whole timeout; ``ConfigurationError`` for anything else.
        """
        if not isinstance(token, str) or not token.strip():
            raise InvalidRegistrationTokenError(
                "no registration token was given", aws_error_code="InvalidTokenException"
            )
        client: Any = self._client.get()
        answer = call_with_retries(
            lambda: client.resolve_customer(RegistrationToken=token),
            timeout=self._timeout,
            stop=stop or threading.Event(),
            operation="ResolveCustomer",
            budget_name=f"the {format_duration(self._timeout)} ResolveCustomer retry budget",
        )
        return SaasCustomer.from_resolve_answer(answer)


_default: CustomerResolver | None = None
_default_lock = threading.Lock()


def resolve_customer(
    token: str, *, client: MeteringClient | Any | None = None, stop: threading.Event | None = None
) -> SaasCustomer:
    """Resolve ``token`` (form field ``x-amzn-marketplace-token``) into the buyer's identifiers.

    Without ``client`` one client is created on first use from the environment (region, endpoint,
    credentials) and reused. See ``CustomerResolver.resolve`` for the errors.
    """
    global _default
    if client is not None:
        return CustomerResolver(client=client).resolve(token, stop=stop)
    with _default_lock:
        if _default is None:
            _default = CustomerResolver()
        resolver = _default
    return resolver.resolve(token, stop=stop)

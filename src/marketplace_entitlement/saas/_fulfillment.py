"""The fulfillment URL: read the buyer's form POST, resolve the token, hand the customer over.

AWS Marketplace sends a new SaaS buyer's browser to the seller's fulfillment URL with a form POST
(``application/x-www-form-urlencoded``) holding ``x-amzn-marketplace-token``. The core,
``handle_fulfillment``, knows no framework; ``FulfillmentWSGI`` and ``FulfillmentASGI`` mount it in
any WSGI (Flask, Django, ...) or ASGI (FastAPI, Starlette, ...) application. The body read is
bounded (``MAX_FORM_BYTES``): a larger one is refused before it is read.
"""

from __future__ import annotations

import html
import logging
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from marketplace_entitlement._errors import (
    EntitlementError,
    RegistrationTokenError,
    ServiceUnavailableError,
)
from marketplace_entitlement.saas._customer import SaasCustomer
from marketplace_entitlement.saas._resolve import CustomerResolver

logger = logging.getLogger(__name__)

TOKEN_FIELD = "x-amzn-marketplace-token"  # noqa: S105  (a form field name, not a secret)
MAX_FORM_BYTES = 16 * 1024  # a registration token is well under 1 KiB
FORM_TYPE = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class FulfillmentResponse:
    """What the fulfillment URL answers: status, headers and body (any framework can send it)."""

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    @classmethod
    def redirect(cls, location: str) -> FulfillmentResponse:
        """303 See Other to ``location`` (e.g. the seller's sign-up page for this customer)."""
        return cls(303, (("Location", location),))

    @classmethod
    def page(cls, status: int, text: str) -> FulfillmentResponse:
        """A minimal HTML page saying ``text``."""
        body = f"<!doctype html><title>{status}</title><p>{html.escape(text)}</p>\n".encode()
        return cls(status, (("Content-Type", "text/html; charset=utf-8"),), body)

    @property
    def reason(self) -> str:
        """The HTTP reason phrase of ``status``."""
        from http import HTTPStatus  # noqa: PLC0415  (only to name the status)

        try:
            return HTTPStatus(self.status).phrase
        except ValueError:
            return "Unknown"


OnCustomer = Callable[[SaasCustomer], "FulfillmentResponse | str"]
AsyncOnCustomer = Callable[
    [SaasCustomer], "Awaitable[FulfillmentResponse | str] | FulfillmentResponse | str"
]
OnError = Callable[[EntitlementError], FulfillmentResponse]


def default_error_page(error: EntitlementError) -> FulfillmentResponse:
    """400 for a refused or missing token, 503 when the service stayed unavailable, else 500."""
    if isinstance(error, RegistrationTokenError):
        return FulfillmentResponse.page(
            400,
            "This sign-up link is not valid or has expired. Please return to AWS Marketplace "
            "and open the product's page to set up your account again.",
        )
    if isinstance(error, ServiceUnavailableError):
        return FulfillmentResponse.page(
            503, "AWS Marketplace could not be reached. Please try again in a minute."
        )
    return FulfillmentResponse.page(500, "Sign-up failed on our side; we have been notified.")


@dataclass
class Fulfillment:
    """The framework-free core: a form body in, a ``FulfillmentResponse`` out."""

    on_customer: OnCustomer
    resolver: CustomerResolver | None = None
    on_error: OnError = default_error_page
    max_body: int = MAX_FORM_BYTES

    def _resolve(self, token: str) -> SaasCustomer:
        if self.resolver is None:
            self.resolver = CustomerResolver()  # from the environment, on first use
        return self.resolver.resolve(token)

    def refuse_early(
        self, method: str, content_type: str | None, length: int | None
    ) -> FulfillmentResponse | None:
        """Refuse before reading the body: wrong method, wrong type, or a body too large."""
        if method.upper() != "POST":
            return FulfillmentResponse(
                405, (("Allow", "POST"), ("Content-Type", "text/plain")), b"POST only\n"
            )
        if length is not None and length > self.max_body:
            return FulfillmentResponse.page(413, "The sign-up form is too large.")
        if (content_type or "").split(";")[0].strip().lower() != FORM_TYPE:
            return FulfillmentResponse.page(415, f"The sign-up form must be sent as {FORM_TYPE}.")
        return None

    def token_from(self, body: bytes) -> str | None:
        """The registration token of a form body, or None when it is missing or empty."""
        try:
            fields = urllib.parse.parse_qs(
                body.decode("utf-8"), keep_blank_values=False, max_num_fields=64
            )
        except (UnicodeDecodeError, ValueError):
            return None
        values = fields.get(TOKEN_FIELD) or []
        return values[0] if len(values) == 1 and values[0].strip() else None

    def resolve_form(self, body: bytes) -> SaasCustomer | FulfillmentResponse:
        """Resolve the form's token; a missing or refused token becomes the error page."""
        token = self.token_from(body)
        if token is None:
            logger.warning(
                "fulfillment POST without %s", TOKEN_FIELD, extra={"event": "saas.fulfillment"}
            )
            return FulfillmentResponse.page(
                400, f"The sign-up form has no {TOKEN_FIELD}: open this page from AWS Marketplace."
            )
        try:
            customer = self._resolve(token)
        except EntitlementError as error:
            logger.warning(
                "fulfillment refused: %s",
                error.refusal_line(),
                extra={"event": "saas.fulfillment", "outcome": "refused"},
            )
            return self.on_error(error)
        logger.info(
            "fulfillment resolved a customer",
            extra={
                "event": "saas.fulfillment",
                "outcome": "resolved",
                "product_code": customer.product_code,
                "aws_account_id": customer.aws_account_id,
            },
        )
        return customer

    def handle(self, method: str, content_type: str | None, body: bytes) -> FulfillmentResponse:
        """Everything, for a body already read (bounded by the caller)."""
        early = self.refuse_early(method, content_type, len(body))
        if early is not None:
            return early
        resolved = self.resolve_form(body)
        if isinstance(resolved, FulfillmentResponse):
            return resolved
        return _as_response(self.on_customer(resolved))


def _as_response(value: FulfillmentResponse | str) -> FulfillmentResponse:
    """A callback may answer a URL (redirected to with 303) or a whole response."""
    return FulfillmentResponse.redirect(value) if isinstance(value, str) else value


def handle_fulfillment(
    method: str,
    content_type: str | None,
    body: bytes,
    on_customer: OnCustomer,
    *,
    resolver: CustomerResolver | None = None,
) -> FulfillmentResponse:
    """One fulfillment request, for frameworks where mounting an app is awkward."""
    return Fulfillment(on_customer, resolver=resolver).handle(method, content_type, body)


class FulfillmentWSGI:
    """A WSGI application for the fulfillment URL (mount it at the path you registered)."""

    def __init__(
        self,
        on_customer: OnCustomer,
        *,
        resolver: CustomerResolver | None = None,
        on_error: OnError = default_error_page,
    ) -> None:
        self.core = Fulfillment(on_customer, resolver=resolver, on_error=on_error)

    def __call__(
        self, environ: Mapping[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        """Read at most ``max_body`` bytes of the form, resolve, answer."""
        length = _length(environ.get("CONTENT_LENGTH"))
        method = str(environ.get("REQUEST_METHOD", "GET"))
        response = self.core.refuse_early(method, environ.get("CONTENT_TYPE"), length)
        if response is None:
            stream = environ["wsgi.input"]
            if length is None and environ.get("wsgi.input_terminated"):  # chunked
                length = self.core.max_body + 1
            body = stream.read(min(length, self.core.max_body + 1)) if length else b""
            response = self.core.handle(method, environ.get("CONTENT_TYPE"), body)
        start_response(f"{response.status} {response.reason}", _headers(response))
        return [response.body]


class FulfillmentASGI:
    """An ASGI application for the fulfillment URL; ``on_customer`` may be a coroutine function.

    ResolveCustomer (botocore, blocking) and a plain ``on_customer`` run in a worker thread.
    """

    def __init__(
        self,
        on_customer: AsyncOnCustomer,
        *,
        resolver: CustomerResolver | None = None,
        on_error: OnError = default_error_page,
    ) -> None:
        self.on_customer = on_customer
        self.core = Fulfillment(_unused_callback, resolver=resolver, on_error=on_error)

    async def __call__(
        self,
        scope: Mapping[str, Any],
        receive: Callable[[], Awaitable[Mapping[str, Any]]],
        send: Callable[[Mapping[str, Any]], Awaitable[None]],
    ) -> None:
        """Serve one HTTP request (other scope types are not ours)."""
        if scope["type"] != "http":
            raise RuntimeError(f"the fulfillment app serves HTTP only, not {scope['type']}")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        length = _length(headers.get("content-length"))
        content_type = headers.get("content-type")
        response = self.core.refuse_early(scope["method"], content_type, length)
        if response is None:
            body = await _read_bounded(receive, self.core.max_body)
            response = self.core.refuse_early(scope["method"], content_type, len(body))
            if response is None:
                response = await self._fulfil(body)
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": [
                    (k.encode("latin-1"), v.encode("latin-1")) for k, v in _headers(response)
                ],
            }
        )
        await send({"type": "http.response.body", "body": response.body})

    async def _fulfil(self, body: bytes) -> FulfillmentResponse:
        import asyncio  # noqa: PLC0415  (only ASGI apps need these; they cost milliseconds to import)
        import inspect  # noqa: PLC0415

        resolved = await asyncio.to_thread(self.core.resolve_form, body)
        if isinstance(resolved, FulfillmentResponse):
            return resolved
        if inspect.iscoroutinefunction(self.on_customer):
            outcome = await self.on_customer(resolved)
        else:
            outcome = await asyncio.to_thread(self.on_customer, resolved)
            if inspect.isawaitable(outcome):
                outcome = await outcome
        return _as_response(outcome)


def _unused_callback(customer: SaasCustomer) -> FulfillmentResponse:
    raise AssertionError("FulfillmentASGI calls its own on_customer")  # pragma: no cover


async def _read_bounded(receive: Callable[[], Awaitable[Mapping[str, Any]]], limit: int) -> bytes:
    """Read the body, stopping as soon as it exceeds ``limit`` (the caller then refuses it)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = bytes(message.get("body", b""))
        size += len(chunk)
        chunks.append(chunk)
        if size > limit or not message.get("more_body", False):
            break
    return b"".join(chunks)


def _length(value: object) -> int | None:
    try:
        return int(str(value)) if value not in (None, "") else None
    except ValueError:
        return None


def _headers(response: FulfillmentResponse) -> list[tuple[str, str]]:
    headers = list(response.headers)
    if not any(name.lower() == "content-length" for name, _ in headers):
        headers.append(("Content-Length", str(len(response.body))))
    return headers

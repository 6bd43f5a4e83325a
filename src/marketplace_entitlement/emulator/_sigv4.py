"""Parsing and checking of AWS Signature Version 4 ``Authorization`` headers."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Final
from urllib.parse import parse_qsl, quote, urlsplit

from marketplace_entitlement.emulator._errors import (
    INVALID_SIGNATURE,
    MISSING_AUTHENTICATION_TOKEN,
    UNRECOGNIZED_CLIENT,
    ServiceError,
)

ALGORITHM: Final = "AWS4-HMAC-SHA256"
SIGNING_NAME: Final = "aws-marketplace"
MAX_CLOCK_SKEW_SECONDS: Final = 15 * 60

_CREDENTIAL = re.compile(
    r"^(?P<akid>[^/\s]+)/(?P<date>\d{8})/(?P<region>[^/\s]+)/(?P<service>[^/\s]+)/aws4_request$"
)
_SIGNATURE = re.compile(r"^[0-9a-f]{64}$")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class SignedIdentity:
    """What the ``Authorization`` header says about the caller."""

    access_key_id: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_authorization(header: str | None) -> SignedIdentity:
    """Parse a SigV4 ``Authorization`` header, or raise the error AWS answers for it."""
    if not header:
        raise ServiceError(MISSING_AUTHENTICATION_TOKEN, "Missing Authentication Token")
    algorithm, _, rest = header.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise ServiceError(INVALID_SIGNATURE, f"Unsupported signing algorithm {algorithm!r}")
    parts: dict[str, str] = {}
    for item in rest.split(","):
        key, sep, value = item.strip().partition("=")
        if sep:
            parts[key] = value
    missing = [key for key in ("Credential", "SignedHeaders", "Signature") if key not in parts]
    if missing:
        raise ServiceError(INVALID_SIGNATURE, f"Authorization header requires {', '.join(missing)}")
    credential = _CREDENTIAL.match(parts["Credential"])
    if credential is None:
        raise ServiceError(
            INVALID_SIGNATURE, "Credential must have the form KEY/DATE/REGION/SERVICE/aws4_request"
        )
    if credential["service"] != SIGNING_NAME:
        raise ServiceError(
            INVALID_SIGNATURE,
            f"Credential should be scoped to correct service: '{SIGNING_NAME}'.",
        )
    signed_headers = tuple(parts["SignedHeaders"].split(";"))
    if "host" not in signed_headers or not _SIGNATURE.match(parts["Signature"]):
        raise ServiceError(INVALID_SIGNATURE, "The request signature is malformed")
    return SignedIdentity(
        access_key_id=credential["akid"],
        date=credential["date"],
        region=credential["region"],
        service=credential["service"],
        signed_headers=signed_headers,
        signature=parts["Signature"],
    )


def _canonical_uri(path: str) -> str:
    # The path on the request line is already encoded once by the client; non-S3 services
    # encode it once more for signing.
    return quote(path or "/", safe="/~")


def _canonical_query(query: str) -> str:
    pairs = sorted(
        (quote(key, safe="-_.~"), quote(value, safe="-_.~"))
        for key, value in parse_qsl(query, keep_blank_values=True)
    )
    return "&".join(f"{key}={value}" for key, value in pairs)


def canonical_request(
    method: str,
    target: str,
    headers: Mapping[str, Sequence[str]],
    signed_headers: Sequence[str],
    body: bytes,
) -> str:
    """Build the SigV4 canonical request; ``headers`` maps lower-case names to their values."""
    split = urlsplit(target)
    lines = [
        f"{name}:{','.join(_SPACES.sub(' ', value.strip()) for value in headers.get(name, ()))}"
        for name in signed_headers
    ]
    payload_hash = hashlib.sha256(body).hexdigest()
    return "\n".join(
        [
            method,
            _canonical_uri(split.path),
            _canonical_query(split.query),
            "\n".join(lines) + "\n",
            ";".join(signed_headers),
            payload_hash,
        ]
    )


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def compute_signature(
    identity: SignedIdentity, secret_key: str, amz_date: str, request_text: str
) -> str:
    """Return the hex signature of ``request_text`` (a canonical request) for ``identity``."""
    scope = f"{identity.date}/{identity.region}/{identity.service}/aws4_request"
    string_to_sign = "\n".join(
        [ALGORITHM, amz_date, scope, hashlib.sha256(request_text.encode("utf-8")).hexdigest()]
    )
    key = _hmac(f"AWS4{secret_key}".encode(), identity.date)
    for part in (identity.region, identity.service, "aws4_request"):
        key = _hmac(key, part)
    return hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def verify_signature(
    identity: SignedIdentity,
    *,
    credentials: Mapping[str, str],
    method: str,
    target: str,
    headers: Mapping[str, Sequence[str]],
    body: bytes,
    now: float,
) -> None:
    """Recompute the signature with the secret configured for the caller's access key id.

    Raises ``UnrecognizedClientException`` for an access key id that is not configured and
    ``InvalidSignatureException`` when the signature, its date or its scope does not match.
    """
    secret = credentials.get(identity.access_key_id)
    if secret is None:
        raise ServiceError(
            UNRECOGNIZED_CLIENT, "The security token included in the request is invalid."
        )
    amz_date = next(iter(headers.get("x-amz-date", ())), "")
    try:
        signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        raise ServiceError(INVALID_SIGNATURE, "X-Amz-Date is missing or malformed") from None
    if abs(signed_at.timestamp() - now) > MAX_CLOCK_SKEW_SECONDS:
        raise ServiceError(INVALID_SIGNATURE, "Signature expired: X-Amz-Date is too far from now")
    if not amz_date.startswith(identity.date):
        raise ServiceError(INVALID_SIGNATURE, "Credential date does not match X-Amz-Date")
    request_text = canonical_request(method, target, headers, identity.signed_headers, body)
    expected = compute_signature(identity, secret, amz_date, request_text)
    if not hmac.compare_digest(expected, identity.signature):
        raise ServiceError(
            INVALID_SIGNATURE,
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method.",
        )

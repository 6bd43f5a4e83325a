"""AWS Signature Version 4: the ``Authorization`` header read, the signature checked by botocore."""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Final

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
    """Sign the received request again with botocore's own SigV4 signer and compare.

    The request is rebuilt as a botocore ``AWSRequest`` from the method, the path and exactly the
    headers the client says it signed, then signed by ``botocore.auth.SigV4Auth`` with the secret
    configured for the caller's access key id, at the request's own ``X-Amz-Date``, and the two
    signatures are compared in constant time. No SigV4 computation is written here.

    Raises ``UnrecognizedClientException`` for an access key id that is not configured and
    ``InvalidSignatureException`` when the signature, its date or its scope does not match.
    """
    from botocore.auth import SigV4Auth  # noqa: PLC0415  (botocore loads only when verifying)
    from botocore.awsrequest import AWSRequest  # noqa: PLC0415
    from botocore.credentials import Credentials  # noqa: PLC0415

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
    host = ",".join(headers.get("host", ()))
    signed = {name: ",".join(headers.get(name, ())) for name in identity.signed_headers}
    request = AWSRequest(method=method, url=f"http://{host}{target}", headers=signed, data=body)
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(
        Credentials(identity.access_key_id, secret), identity.service, identity.region
    )
    expected = signer.signature(
        signer.string_to_sign(request, signer.canonical_request(request)), request
    )
    if not hmac.compare_digest(expected, identity.signature):
        raise ServiceError(
            INVALID_SIGNATURE,
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method.",
        )

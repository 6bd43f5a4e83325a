"""Verify the RegisterUsage Signature: PS256 only, fixed here; claims equal to what was sent.

The verifier never takes the algorithm from the token, never returns ``False``: it returns the
verified claims or raises a VerificationError saying what failed. The JWS compact form is parsed
here, strictly (RFC 7515: three base64url parts, JSON object header and payload), and the
signature checked with ``_rsa``; PyJWT is not needed on this path (see ``_rsa`` for why).
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from marketplace_entitlement._errors import (
    ClaimMismatchError,
    InvalidSignatureError,
    MalformedTokenError,
)
from marketplace_entitlement.entitlement._rsa import RsaPublicKey

ALGORITHM = "PS256"
# A RegisterUsage token is a few hundred bytes (an RSA-3072 signature is 512 base64url characters);
# anything far larger is refused before it is parsed.
MAX_TOKEN_BYTES = 16 * 1024
# How far ``iat`` may be from our clock, either way: containers share their host's NTP-synced clock,
# so five minutes is generous for skew and still refuses tokens minted long ago.
MAX_CLOCK_SKEW_SECONDS = 300.0

# Each claim we check, by its camelCase name (seen from the real service) and its PascalCase name
# (AWS's prose). FACTS.md: accept either; never rely on claims not listed here.
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")

CLAIM_SPELLINGS: Mapping[str, tuple[str, str]] = {
    "productCode": ("productCode", "ProductCode"),
    "publicKeyVersion": ("publicKeyVersion", "PublicKeyVersion"),
    "nonce": ("nonce", "Nonce"),
}

_PLAUSIBILITY_HINT = "the token was not issued for this registration; it may be replayed or forged"


@dataclass(frozen=True)
class VerifiedClaims:
    """The claims of a verified token that matter to the gate."""

    product_code: str
    public_key_version: int
    nonce: str
    issued_at: float


def verify_signature(
    token: str,
    key: RsaPublicKey,
    *,
    product_code: str,
    public_key_version: int,
    nonce: str,
    now: float | None = None,
) -> VerifiedClaims:
    """Verify ``token`` with ``key`` (PS256) and check its claims against what was sent."""
    claims = _decode(token, key)
    return check_claims(
        claims,
        product_code=product_code,
        public_key_version=public_key_version,
        nonce=nonce,
        now=time.time() if now is None else now,
    )


def read_unverified_claims(token: str) -> dict[str, Any]:
    """Read a token's claims without checking its signature (only when verification is off)."""
    _header, claims, _signing_input, _signature = _split(token)
    return claims


def _b64url_decode(part: str, what: str) -> bytes:
    """base64url (RFC 7515 section 2); trailing ``=`` padding is tolerated, as PyJWT does."""
    bare = part.rstrip("=")
    if not _BASE64URL.fullmatch(bare) or len(bare) % 4 == 1 or len(part) - len(bare) > 2:
        raise MalformedTokenError(f"the Signature's {what} is not base64url")
    return base64.urlsafe_b64decode(bare + "=" * (-len(bare) % 4))


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, ValueError) as error:
        raise MalformedTokenError(f"the Signature's {what} is not JSON") from error
    if not isinstance(value, dict):
        raise MalformedTokenError(f"the Signature's {what} is not a JSON object")
    return value


def _split(token: object) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """Split a JWS compact token into header, claims, signing input and signature bytes."""
    if not isinstance(token, str) or not token:
        raise MalformedTokenError("RegisterUsage returned an empty Signature")
    if len(token) > MAX_TOKEN_BYTES:
        raise MalformedTokenError(
            f"the Signature is {len(token)} bytes, more than the {MAX_TOKEN_BYTES} a token can be"
        )
    parts = token.split(".")
    if len(parts) != 3:
        raise MalformedTokenError("the Signature is not a JWT (header.payload.signature)")
    header_b64, payload_b64, signature_b64 = parts
    header = _json_object(_b64url_decode(header_b64, "header"), "header")
    claims = _json_object(_b64url_decode(payload_b64, "payload"), "payload")
    signature = _b64url_decode(signature_b64, "signature")
    return header, claims, f"{header_b64}.{payload_b64}".encode("ascii"), signature


def _decode(token: str, key: RsaPublicKey) -> dict[str, Any]:
    """Check the header, then the RSASSA-PSS signature with ``key``; return the claims."""
    header, claims, signing_input, signature = _split(token)
    if header.get("alg") != ALGORITHM:
        raise MalformedTokenError(
            f"the Signature uses alg {header.get('alg')!r}; only {ALGORITHM} is accepted",
            hint=_PLAUSIBILITY_HINT,
        )
    if "crit" in header:
        raise MalformedTokenError(
            "the Signature's header has critical extensions this verifier does not implement",
            hint=_PLAUSIBILITY_HINT,
        )
    if not key.verify_pss_sha256(signature, signing_input):
        raise InvalidSignatureError(
            "the Signature does not verify with the configured public key",
            hint="check that MARKETPLACE_PUBLIC_KEY(_FILE) holds this product's key for "
            "MARKETPLACE_PUBLIC_KEY_VERSION",
        )
    return claims


def _claim(claims: Mapping[str, Any], name: str) -> Any:
    """Read a claim in either casing; both present with different values is refused."""
    camel, pascal = CLAIM_SPELLINGS[name]
    values = [claims[spelling] for spelling in (camel, pascal) if spelling in claims]
    if not values:
        return None
    if len(values) == 2 and values[0] != values[1]:
        raise ClaimMismatchError(
            f"the Signature carries {camel} and {pascal} with different values", claim=name,
            expected=values[0], actual=values[1], hint=_PLAUSIBILITY_HINT,
        )  # fmt: skip
    return values[0]


def _as_key_version(value: Any) -> int | None:
    """A JSON number (FACTS.md); a string of digits is accepted too: only the value matters."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def check_claims(
    claims: Mapping[str, Any],
    *,
    product_code: str,
    public_key_version: int,
    nonce: str,
    now: float,
) -> VerifiedClaims:
    """Check productCode, publicKeyVersion, nonce and iat against what was sent and the clock."""
    expected: dict[str, Any] = {
        "productCode": product_code,
        "publicKeyVersion": public_key_version,
        "nonce": nonce,
    }
    actual: dict[str, Any] = {name: _claim(claims, name) for name in CLAIM_SPELLINGS}
    actual["publicKeyVersion"] = (
        _as_key_version(actual["publicKeyVersion"])
        if actual["publicKeyVersion"] is not None
        else None
    )
    for name, want in expected.items():
        got = actual[name]
        if got is None:
            raise ClaimMismatchError(
                f"the Signature has no {name} claim", claim=name, expected=want, actual=None,
                hint=_PLAUSIBILITY_HINT,
            )  # fmt: skip
        if got != want:
            raise ClaimMismatchError(
                f"the Signature's {name} is {got!r}, but {want!r} was sent", claim=name,
                expected=want, actual=got, hint=_PLAUSIBILITY_HINT,
            )  # fmt: skip
    issued_at = claims.get("iat")
    if isinstance(issued_at, bool) or not isinstance(issued_at, (int, float)):
        raise ClaimMismatchError(
            "the Signature's iat is not a number", claim="iat", expected="seconds since the epoch",
            actual=issued_at, hint=_PLAUSIBILITY_HINT,
        )  # fmt: skip
    if abs(float(issued_at) - now) > MAX_CLOCK_SKEW_SECONDS:
        raise ClaimMismatchError(
            f"the Signature's iat is {float(issued_at) - now:+.0f}s from this host's clock "
            f"(at most {MAX_CLOCK_SKEW_SECONDS:.0f}s either way is accepted)",
            claim="iat", expected=now, actual=issued_at,
            hint="check this host's clock (NTP); otherwise the token is stale or forged",
        )  # fmt: skip
    return VerifiedClaims(
        product_code=product_code,
        public_key_version=public_key_version,
        nonce=nonce,
        issued_at=float(issued_at),
    )

"""Verify the RegisterUsage Signature with PyJWT and cryptography: PS256 only, fixed here.

The verifier never takes the algorithm from the token and never returns ``False``: it returns the
verified claims or raises a VerificationError saying what failed. PyJWT parses the JWS compact form
and checks the signature through a private ``PyJWS`` instance whose only algorithm is PS256 with
cryptography's ``PSS.AUTO`` salt length (below); the claims are then checked here against what was
sent. No cryptography, DER/PEM or JWS parsing is written by hand in this package.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from marketplace_entitlement._errors import (
    ClaimMismatchError,
    InvalidSignatureError,
    MalformedTokenError,
)
from marketplace_entitlement._parsers import MAX_KEY_VERSION

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
    from jwt import PyJWS

ALGORITHM = "PS256"
# A RegisterUsage token is a few hundred bytes (an RSA-3072 signature is 512 base64url characters);
# anything far larger is refused before it is parsed.
MAX_TOKEN_BYTES = 16 * 1024
# How far ``iat`` may be from our clock, either way: containers share their host's NTP-synced clock,
# so five minutes is generous for skew and still refuses tokens minted long ago.
MAX_CLOCK_SKEW_SECONDS = 300.0
# PublicKeyVersion is an int >= 1 in the service model; JSON integers longer than this many digits
# are refused while parsing (no 5000-digit numbers reach int(), float() or a comparison).
MAX_INTEGER_DIGITS = 19
_ASCII_DIGITS = re.compile(r"[0-9]{1,10}")

# Each claim we check, by its camelCase name (seen from the real service) and its PascalCase name
# (AWS's prose). Accept either; never rely on claims not listed here.
CLAIM_SPELLINGS: Mapping[str, tuple[str, str]] = {
    "productCode": ("productCode", "ProductCode"),
    "publicKeyVersion": ("publicKeyVersion", "PublicKeyVersion"),
    "nonce": ("nonce", "Nonce"),
}

_PLAUSIBILITY_HINT = "the token was not issued for this registration; it may be replayed or forged"
_KEY_HINT = (
    "check that MARKETPLACE_PUBLIC_KEY(_FILE) holds this product's key for "
    "MARKETPLACE_PUBLIC_KEY_VERSION"
)


@dataclass(frozen=True)
class VerifiedClaims:
    """The claims of a verified token that matter to the gate."""

    product_code: str
    public_key_version: int
    nonce: str
    issued_at: float


@lru_cache(maxsize=1)
def _jws() -> PyJWS:
    """A private PyJWS that knows exactly one algorithm: PS256 with automatic salt length.

    AWS documents no PSS salt length. RFC 7518 has PS256 signers use 32 bytes and PyJWT's built-in
    PS256 insists on that; golang-jwt (which NGINX's integration runs against the real service)
    and OpenSSL's default verification recover the salt length from the encoding instead. The salt
    length does not weaken PSS, so this verifier accepts any, as they do. The instance is private:
    PyJWT's global ``jwt.api_jws`` is left exactly as the application has it.
    """
    from cryptography.exceptions import InvalidSignature  # noqa: PLC0415  (imported on first use)
    from cryptography.hazmat.primitives import hashes  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import padding  # noqa: PLC0415
    from jwt import PyJWS  # noqa: PLC0415
    from jwt.algorithms import RSAPSSAlgorithm  # noqa: PLC0415

    class PS256AnySaltLength(RSAPSSAlgorithm):
        """PS256 whose verification recovers the salt length (cryptography's ``PSS.AUTO``)."""

        def verify(self, msg: bytes, key: RSAPublicKey, sig: bytes) -> bool:
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
            try:
                key.verify(sig, msg, pss, hashes.SHA256())
            except InvalidSignature:
                return False
            return True

        def check_key_length(self, key: RSAPrivateKey | RSAPublicKey) -> str | None:
            """Key sizes are checked once, when the key is loaded (``_parsers``), not per token."""
            return None

    jws = PyJWS(algorithms=[])
    jws.register_algorithm(ALGORITHM, PS256AnySaltLength(RSAPSSAlgorithm.SHA256))
    return jws


def verifier_ready() -> bool:
    """Whether the verifier is built (its modules imported)."""
    return _jws.cache_info().currsize > 0


def prepare_verifier() -> None:
    """Import and build the verifier now (the gate calls it while RegisterUsage is in flight)."""
    _jws()


def verify_signature(
    token: str,
    key: RSAPublicKey,
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
    return _decode(token, None)


def _check_size(token: object) -> str:
    if not isinstance(token, str) or not token:
        raise MalformedTokenError("RegisterUsage returned an empty Signature")
    if len(token) > MAX_TOKEN_BYTES:
        raise MalformedTokenError(
            f"the Signature is {len(token)} bytes, more than the {MAX_TOKEN_BYTES} a token can be"
        )
    if not token.isascii():
        raise MalformedTokenError("the Signature is not a JWT (it holds non-ASCII characters)")
    return token


def _decode(token: object, key: RSAPublicKey | None) -> dict[str, Any]:
    """Let PyJWT parse the JWS and (with ``key``) verify it as PS256; return the claims."""
    import jwt  # noqa: PLC0415  (imported on first use; see prepare_verifier)

    text = _check_size(token)
    try:
        if key is None:
            decoded = _jws().decode_complete(text, options={"verify_signature": False})
        else:
            decoded = _jws().decode_complete(text, key=key, algorithms=[ALGORITHM])
    except jwt.InvalidSignatureError as error:
        raise InvalidSignatureError(
            "the Signature does not verify with the configured public key", hint=_KEY_HINT
        ) from error
    except jwt.InvalidAlgorithmError as error:
        alg = _header_alg(text)
        raise MalformedTokenError(
            f"the Signature uses alg {alg!r}; only {ALGORITHM} is accepted",
            hint=_PLAUSIBILITY_HINT,
        ) from error
    except jwt.InvalidTokenError as error:
        raise MalformedTokenError(
            f"the Signature is not a valid JWS: {error}", hint=_PLAUSIBILITY_HINT
        ) from error
    except RecursionError as error:  # an older PyJWT parses a deeply nested header unguarded
        raise MalformedTokenError("the Signature's header is nested too deeply") from error
    header = decoded["header"]
    if "crit" in header:
        raise MalformedTokenError(
            "the Signature's header has critical extensions this verifier does not implement",
            hint=_PLAUSIBILITY_HINT,
        )
    return _json_object(decoded["payload"], "payload")


def _header_alg(token: str) -> object:
    import jwt  # noqa: PLC0415

    try:
        return _jws().get_unverified_header(token).get("alg")
    except (jwt.InvalidTokenError, RecursionError):
        return None


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise ValueError("integer too long")
    return int(text)


def _no_constant(text: str) -> object:
    raise ValueError(f"{text} is not JSON")


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    """Parse strict JSON: no NaN/Infinity, no huge integers, no nesting beyond the stack."""
    try:
        value = json.loads(data, parse_int=_bounded_int, parse_constant=_no_constant)
    except RecursionError as error:
        raise MalformedTokenError(f"the Signature's {what} is nested too deeply") from error
    except (UnicodeDecodeError, ValueError) as error:
        raise MalformedTokenError(f"the Signature's {what} is not JSON ({error})") from error
    if not isinstance(value, dict):
        raise MalformedTokenError(f"the Signature's {what} is not a JSON object")
    return value


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


def as_key_version(value: Any) -> int | None:
    """A JSON integer (or a string of at most 10 ASCII digits: only the value matters), in range.

    Non-ASCII digits (Arabic-Indic, full-width, superscripts) are not a version: ``str.isdigit``
    would accept them and ``int`` would read some of them as ASCII digits.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer() and abs(value) <= MAX_KEY_VERSION:
        value = int(value)
    if isinstance(value, str) and _ASCII_DIGITS.fullmatch(value):
        value = int(value)
    if isinstance(value, int) and 1 <= value <= MAX_KEY_VERSION:
        return value
    return None


def _issued_at(value: Any, now: float) -> float:
    """``iat`` as a finite number of seconds, or a ClaimMismatchError."""
    number: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:
            number = None
    if number is None or not math.isfinite(number):
        raise ClaimMismatchError(
            "the Signature's iat is not a finite number", claim="iat",
            expected="seconds since the epoch", actual=str(value)[:40], hint=_PLAUSIBILITY_HINT,
        )  # fmt: skip
    return number


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
    raw_version = actual["publicKeyVersion"]
    actual["publicKeyVersion"] = as_key_version(raw_version)
    for name, want in expected.items():
        got = actual[name]
        if got is None:
            absent = name != "publicKeyVersion" or raw_version is None
            raise ClaimMismatchError(
                f"the Signature has no {name} claim" if absent
                else f"the Signature's {name} is not a key version ({str(raw_version)[:40]!r})",
                claim=name, expected=want, actual=None if absent else str(raw_version)[:40],
                hint=_PLAUSIBILITY_HINT,
            )  # fmt: skip
        if got != want:
            raise ClaimMismatchError(
                f"the Signature's {name} is {str(got)[:300]!r}, but {want!r} was sent",
                claim=name, expected=want, actual=got, hint=_PLAUSIBILITY_HINT,
            )  # fmt: skip
    issued_at = _issued_at(claims.get("iat"), now)
    if abs(issued_at - now) > MAX_CLOCK_SKEW_SECONDS:
        raise ClaimMismatchError(
            f"the Signature's iat is {issued_at - now:+.0f}s from this host's clock "
            f"(at most {MAX_CLOCK_SKEW_SECONDS:.0f}s either way is accepted)",
            claim="iat", expected=now, actual=issued_at,
            hint="check this host's clock (NTP); otherwise the token is stale or forged",
        )  # fmt: skip
    return VerifiedClaims(
        product_code=product_code,
        public_key_version=public_key_version,
        nonce=nonce,
        issued_at=issued_at,
    )

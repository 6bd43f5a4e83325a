"""Strict parsers for setting values: each raises ConfigurationError naming the variable."""

from __future__ import annotations

import base64
import binascii
import logging
import re
from pathlib import Path

from marketplace_entitlement._errors import ConfigurationError
from marketplace_entitlement.entitlement._rsa import (
    KeyFormatError,
    RsaPublicKey,
    load_pem_public_key,
    spki_der,
)

logger = logging.getLogger(__name__)

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)(ms|s|m|h)")
_BARE_NUMBER = re.compile(r"\d+(?:\.\d+)?|\.\d+")

# FACTS.md: the botocore model's pattern and length for ProductCode (we also refuse empty).
PRODUCT_CODE_PATTERN = re.compile(r"[-a-zA-Z0-9/=:_.@]{1,255}")

# The jwt.io demo key that AWS's Java sample shows (FACTS.md): its PEM body carries this.
JWT_IO_DEMO_MODULUS_PREFIX = "dlatRjRjogo3WojgGHFHYLugd"
MIN_RSA_BITS = 1024  # below this, refused: factoring is cheap
USUAL_RSA_BITS = 2048  # below this, a warning: product keys are RSA-3072


def parse_bool(value: str, variable: str) -> bool:
    """Parse ``true/false/1/0/yes/no/on/off`` in any case; anything else is an error."""
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigurationError(
        f"{variable}={value!r} is not a boolean", variable=variable,
        hint="use one of true/false, 1/0, yes/no, on/off",
    )  # fmt: skip


def parse_duration(value: str, variable: str) -> float:
    """Parse a duration in seconds: a bare number (``90``) or Go-style units (``1h30m``)."""
    text = value.strip()
    if _BARE_NUMBER.fullmatch(text):
        return float(text)
    position = 0
    total = 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position == 0 or position != len(text):
        raise ConfigurationError(
            f"{variable}={value!r} is not a duration", variable=variable,
            hint="use seconds (90) or units ms, s, m, h (500ms, 15m, 1h30m)",
        )  # fmt: skip
    return total


def parse_positive_int(value: str, variable: str) -> int:
    """Parse a whole number of at least 1."""
    text = value.strip()
    if not text.isdigit() or int(text) < 1:
        raise ConfigurationError(
            f"{variable}={value!r} is not a whole number of at least 1", variable=variable
        )
    return int(text)


def parse_product_code(value: str, variable: str) -> str:
    """Check a product code against the service's pattern (1-255 of ``-a-zA-Z0-9/=:_.@``)."""
    if not PRODUCT_CODE_PATTERN.fullmatch(value):
        problem = "is empty" if not value else "does not match the product code pattern"
        raise ConfigurationError(
            f"{variable}={value!r} {problem}", variable=variable,
            hint="use the product code from the AWS Marketplace Management Portal "
            "(1-255 characters of letters, digits and -/=:_.@)",
        )  # fmt: skip
    return value


def parse_choice(value: str, variable: str, choices: tuple[str, ...]) -> str:
    """Accept one of ``choices`` (case-insensitive); anything else is an error listing them."""
    lowered = value.strip().lower()
    if lowered not in choices:
        raise ConfigurationError(
            f"{variable}={value!r} is not one of {', '.join(choices)}", variable=variable
        )
    return lowered


def parse_public_key(value: str, variable: str) -> RsaPublicKey:
    r"""Load an RSA public key from PEM text, PEM with ``\n`` escapes, or base64 of the PEM."""
    text = value.strip().replace("\\n", "\n")
    if "-----BEGIN" in text:
        pem = text.encode()
    else:
        try:
            pem = base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError):
            pem = b""
        if b"-----BEGIN" not in pem:
            raise ConfigurationError(
                f"{variable} is neither PEM text nor base64 of a PEM", variable=variable,
                hint="paste the public key AWS Marketplace gave you, including its BEGIN/END lines",
            )  # fmt: skip
    return load_public_key_pem(pem, variable)


def read_public_key_file(path: str, variable: str) -> RsaPublicKey:
    """Read and load an RSA public key PEM file."""
    try:
        pem = Path(path).read_bytes()
    except OSError as error:
        raise ConfigurationError(
            f"{variable}={path!r} cannot be read: {error.strerror or error}", variable=variable
        ) from error
    return load_public_key_pem(pem, variable)


def load_public_key_pem(pem: bytes, variable: str) -> RsaPublicKey:
    """Load PEM bytes as an RSA public key, refusing small keys and the jwt.io demo key."""
    try:
        key = load_pem_public_key(pem)
    except KeyFormatError as error:
        raise ConfigurationError(
            f"{variable} does not hold a readable RSA public key PEM ({error})", variable=variable,
            hint="expected '-----BEGIN PUBLIC KEY-----' ... as AWS Marketplace provides it",
        ) from error  # fmt: skip
    return check_public_key(key, variable)


def check_public_key(key: RsaPublicKey, variable: str) -> RsaPublicKey:
    """Refuse the jwt.io demo key and keys too small to be a Marketplace product key."""
    if is_jwt_io_demo_key(key):
        raise ConfigurationError(
            f"{variable} holds the jwt.io demo key from AWS's Java sample, not your product's key",
            variable=variable,
            hint="that 1024-bit key is public and signs nothing AWS sends; use the public key AWS "
            "Marketplace issued for your product code (from the Seller Operations team)",
        )
    if key.key_size < MIN_RSA_BITS:
        raise ConfigurationError(
            f"{variable} holds a {key.key_size}-bit RSA key; at least {MIN_RSA_BITS} bits are "
            "required (smaller keys are factored in hours: anyone could sign tokens)",
            variable=variable,
            hint="AWS Marketplace product keys are RSA-3072; check you configured the right key",
        )
    if key.key_size < USUAL_RSA_BITS:
        logger.warning(
            "%s holds a %d-bit RSA key; AWS Marketplace product keys are RSA-3072: check it is "
            "your product's key",
            variable,
            key.key_size,
            extra={"event": "public_key.small", "key_size": key.key_size},
        )
    return key


def is_jwt_io_demo_key(key: RsaPublicKey) -> bool:
    """Tell whether ``key`` is the well-known jwt.io demo key (FACTS.md's trap).

    Its PEM body (base64 of the SubjectPublicKeyInfo) carries the modulus prefix FACTS.md quotes.
    """
    return JWT_IO_DEMO_MODULUS_PREFIX in base64.b64encode(spki_der(key)).decode()


def parse_signal_rewrite(value: str, variable: str) -> tuple[tuple[int, int], ...]:
    """Parse ``FROM:TO[,FROM:TO...]`` with signal names or numbers; ``TO`` may be 0 (drop)."""
    from marketplace_entitlement.supervision._signals import signal_from_name  # noqa: PLC0415  (no cycle)

    pairs: list[tuple[int, int]] = []
    for item in filter(None, (part.strip() for part in value.split(","))):
        source, _, target = item.partition(":")
        try:
            pairs.append(
                (signal_from_name(source), 0 if target.strip() == "0" else signal_from_name(target))
            )
        except ValueError:
            raise ConfigurationError(
                f"{variable}: {item!r} is not FROM:TO with signal names (TERM:QUIT)",
                variable=variable,
            ) from None
    return tuple(pairs)


def parse_exit_codes(value: str, variable: str) -> tuple[int, ...]:
    """Parse comma-separated exit statuses 0-255 (``143,130``); an empty list is none."""
    codes: list[int] = []
    for item in filter(None, (part.strip() for part in value.split(","))):
        if not item.isdigit() or int(item) > 255:  # 255: the largest exit status
            raise ConfigurationError(
                f"{variable}: {item!r} is not an exit status (0-255); use a list like 143,130",
                variable=variable,
            )
        codes.append(int(item))
    return tuple(sorted(set(codes)))


def parse_signal(value: str, variable: str) -> int:
    """Parse one catchable signal by name or number: ``TERM``, ``SIGTERM``, ``15``."""
    from marketplace_entitlement.supervision._signals import UNCATCHABLE, signal_from_name  # noqa: PLC0415  (no cycle)

    try:
        signum = signal_from_name(value)
    except ValueError:
        signum = 0
    if signum == 0 or signum in UNCATCHABLE:
        raise ConfigurationError(
            f"{variable}: {value.strip()!r} is not a catchable signal (a name like TERM or HUP)",
            variable=variable,
        )
    return signum

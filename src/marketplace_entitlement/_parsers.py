"""Strict parsers for setting values: each raises ConfigurationError naming the variable.

Public keys are loaded by cryptography, imported when a key is first parsed, not at import.
"""

from __future__ import annotations

import base64
import binascii
import logging
import math
import os
import re
import stat
from typing import TYPE_CHECKING

from marketplace_entitlement._errors import ConfigurationError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

logger = logging.getLogger(__name__)

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
# ASCII digits only: ``\d`` would also match Arabic-Indic, full-width and other Unicode digits.
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?|\.[0-9]+)(ms|s|m|h)")
_BARE_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?|\.[0-9]+")
_POSITIVE_INT = re.compile(r"[0-9]{1,10}")
MAX_DURATION_TEXT = 64  # characters; no real duration is longer
MAX_DURATION_SECONDS = 31 * 24 * 3600.0  # every duration setting is at most 31 days
MAX_KEY_VERSION = 2**31 - 1  # PublicKeyVersion is a 32-bit int in the service model
MAX_KEY_BYTES = 64 * 1024  # a PEM public key is under 1 KiB for RSA-4096; files beyond are refused

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
    """Parse a duration in seconds: a bare number (``90``) or Go-style units (``1h30m``).

    ASCII digits only; the result is at most ``MAX_DURATION_SECONDS`` (31 days): anything longer
    (``9`` repeated 400 times would be infinity as a float) is refused, naming the variable.
    """
    text = value.strip()
    total = _duration_seconds(text) if len(text) <= MAX_DURATION_TEXT else None
    if total is None:
        raise ConfigurationError(
            f"{variable}={value[:80]!r} is not a duration", variable=variable,
            hint="use seconds (90) or units ms, s, m, h (500ms, 15m, 1h30m)",
        )  # fmt: skip
    return check_duration(total, variable)


def _duration_seconds(text: str) -> float | None:
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
        return None
    return total


def check_duration(seconds: float, variable: str) -> float:
    """Refuse a duration that is negative, not finite, or longer than ``MAX_DURATION_SECONDS``."""
    number = isinstance(seconds, (int, float)) and not isinstance(seconds, bool)
    finite = number and (isinstance(seconds, int) or math.isfinite(seconds))
    if not finite or not 0 <= seconds <= MAX_DURATION_SECONDS:
        raise ConfigurationError(
            f"{variable}={_shorten(seconds)} is out of range: a duration must be between 0 and "
            f"{MAX_DURATION_SECONDS:.0f}s (31 days)", variable=variable,
        )  # fmt: skip
    return float(seconds)


def _shorten(value: object) -> str:
    if isinstance(value, int) and value.bit_length() > 64:
        return f"<an integer of {value.bit_length()} bits>"  # str() of it may exceed int limits
    return str(value)[:80]


def parse_positive_int(value: str, variable: str) -> int:
    """Parse a whole number from 1 to 2**31-1, in ASCII digits only (no other Unicode digits)."""
    text = value.strip()
    if not _POSITIVE_INT.fullmatch(text) or not 1 <= int(text) <= MAX_KEY_VERSION:
        raise ConfigurationError(
            f"{variable}={value[:80]!r} is not a whole number from 1 to {MAX_KEY_VERSION}",
            variable=variable,
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


def parse_public_key(value: str, variable: str) -> RSAPublicKey:
    r"""Load an RSA public key from PEM text, PEM with ``\n`` escapes, or base64 of the PEM."""
    text = value.strip().replace("\\n", "\n")
    if len(text) > MAX_KEY_BYTES:
        raise ConfigurationError(
            f"{variable} is {len(text)} characters long; a public key PEM is at most "
            f"{MAX_KEY_BYTES}", variable=variable,
        )  # fmt: skip
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


def read_bounded_file(path: str, variable: str, limit: int) -> bytes:
    """Read at most ``limit`` bytes of a regular file; anything else is a configuration error.

    The file is opened non-blocking (a FIFO cannot hang the open) and checked through its own
    descriptor: devices (``/dev/zero``), FIFOs, sockets and directories are refused, and so is a
    file longer than ``limit``.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)
    try:
        descriptor = os.open(path, flags)
    except OSError as error:
        raise ConfigurationError(
            f"{variable}={path!r} cannot be read: {error.strerror or error}", variable=variable
        ) from error
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise ConfigurationError(
                f"{variable}={path!r} is not a regular file", variable=variable,
                hint="point it at a PEM file (devices, FIFOs and directories are refused)",
            )  # fmt: skip
        os.set_blocking(descriptor, True)
        data = b""
        while len(data) <= limit:
            chunk = os.read(descriptor, limit + 1 - len(data))
            if not chunk:
                break
            data += chunk
    except OSError as error:
        raise ConfigurationError(
            f"{variable}={path!r} cannot be read: {error.strerror or error}", variable=variable
        ) from error
    finally:
        os.close(descriptor)
    if len(data) > limit:
        raise ConfigurationError(
            f"{variable}={path!r} is larger than {limit} bytes, more than such a file ever holds",
            variable=variable,
        )
    return data


def read_public_key_file(path: str, variable: str) -> RSAPublicKey:
    """Read (bounded, regular files only) and load an RSA public key PEM file."""
    return load_public_key_pem(read_bounded_file(path, variable, MAX_KEY_BYTES), variable)


def load_public_key_pem(pem: bytes, variable: str) -> RSAPublicKey:
    """Load PEM bytes as an RSA public key (cryptography), refusing small keys and the demo key."""
    from cryptography.hazmat.primitives.asymmetric.rsa import (  # noqa: PLC0415  (see module doc)
        RSAPublicKey,
    )
    from cryptography.hazmat.primitives.serialization import (  # noqa: PLC0415
        load_pem_public_key,
    )

    try:
        key = load_pem_public_key(pem)
    except (ValueError, TypeError) as error:
        raise ConfigurationError(
            f"{variable} does not hold a readable public key PEM ({error})", variable=variable,
            hint="expected '-----BEGIN PUBLIC KEY-----' ... as AWS Marketplace provides it",
        ) from error  # fmt: skip
    if not isinstance(key, RSAPublicKey):
        raise ConfigurationError(
            f"{variable} holds a {type(key).__name__.lstrip('_')}, not an RSA public key",
            variable=variable,
            hint="AWS Marketplace signs with PS256: the product key is an RSA key",
        )
    return check_public_key(key, variable)


def check_public_key(key: RSAPublicKey, variable: str) -> RSAPublicKey:
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


def is_jwt_io_demo_key(key: RSAPublicKey) -> bool:
    """Tell whether ``key`` is the well-known jwt.io demo key (the Java sample's trap).

    Its PEM body (base64 of the SubjectPublicKeyInfo) carries the modulus prefix quoted above.
    """
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return JWT_IO_DEMO_MODULUS_PREFIX in base64.b64encode(der).decode()


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

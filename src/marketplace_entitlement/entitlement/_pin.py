"""Pinning: what decides entitlement, fixed by the seller where the task's environment cannot reach.

A buyer controls the task's environment variables, volumes and command line; the seller controls
the image and the application's code. A *pin* is the seller's statement of the product code, the
public key (and optionally its version) that decide entitlement, and of the pricing model and
usage dimensions (custom pricing, where no key is needed: MeterUsage returns no token). It comes
from code (``check_entitlement(public_key=..., product_code=..., pricing=..., dimensions=...)``)
or from the image's pin file, written at
build time by ``marketplace-entitlement pin`` to ``pin.json`` inside the installed package
directory: a path fixed by where the package is installed, which no environment variable names.

With anything pinned, verification stays on, and an environment variable or command-line option
that contradicts a pinned value is refused (ConfigurationError, exit 78) with a line saying what
was refused: neither side is silently preferred. Dimensions are compared as sets (the order of
the names does not matter; the pinned order is used). A volume mounted over the pin file or over the
package directory is refused too (``/proc/self/mountinfo``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from marketplace_entitlement import _env
from marketplace_entitlement._errors import ConfigurationError, EntitlementError
from marketplace_entitlement._parsers import (
    load_public_key_pem,
    parse_bool,
    parse_choice,
    parse_positive_int,
    parse_product_code,
    read_bounded_file,
    read_public_key_file,
)
from marketplace_entitlement.metering._records import parse_dimensions

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

logger = logging.getLogger(__name__)

PIN_FILE_NAME = "pin.json"
PIN_FORMAT = "marketplace-entitlement-pin/1"
MAX_PIN_BYTES = 64 * 1024
MOUNTINFO = "/proc/self/mountinfo"
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")
PINNABLE = (
    "product_code",
    "public_key_version",
    "public_key",
    "public_key_file",
    "pricing",
    "dimensions",
)


def package_directory() -> Path:
    """The installed ``marketplace_entitlement`` package directory (where the pin file lives)."""
    return Path(os.path.abspath(__file__)).parent.parent


def pin_file_path() -> Path:
    """The image's pin file: ``pin.json`` in the installed package directory (no variable moves it)."""
    return package_directory() / PIN_FILE_NAME


@dataclass(frozen=True)
class Pin:
    """What the seller fixed, and where it was fixed (for the refusal line)."""

    source: str
    product_code: str | None = None
    public_key: RSAPublicKey | None = field(default=None, compare=False, repr=False)
    public_key_version: int | None = None
    pricing: str | None = None
    dimensions: tuple[str, ...] | None = None

    @property
    def empty(self) -> bool:
        """True when nothing is pinned."""
        pinned = (
            self.product_code,
            self.public_key,
            self.public_key_version,
            self.pricing,
            self.dimensions,
        )
        return all(value is None for value in pinned)


def parse_pricing(value: str, what: str) -> str:
    """``hourly`` or ``custom``: the same parser as ``MARKETPLACE_PRICING``."""
    from marketplace_entitlement._settings import PRICING_MODELS  # noqa: PLC0415 (import cycle)

    return parse_choice(value, what, PRICING_MODELS)


def parse_dimension_list(value: Any, what: str) -> tuple[str, ...]:
    """Dimensions as text (``a,b``) or a list/tuple of names: ``MARKETPLACE_DIMENSIONS``'s parser."""
    if isinstance(value, (list, tuple)) and all(isinstance(name, str) for name in value):
        value = ",".join(value)
    if not isinstance(value, str):
        raise ConfigurationError(
            f"{what} is a {type(value).__name__}, not comma-separated names or a list of names"
        )
    return parse_dimensions(value, what)


def check_pricing_pin(pricing: str, dimensions: tuple[str, ...] | None, what: str) -> None:
    """Custom pricing pins its dimensions too; hourly pricing has none."""
    if pricing == "custom" and not dimensions:
        raise ConfigurationError(
            f"{what}: custom pricing needs its dimensions pinned too",
            hint="list the dimension API names of your listing, comma-separated",
        )
    if pricing == "hourly" and dimensions:
        raise ConfigurationError(f"{what}: dimensions are pinned but the pricing is hourly")


def _refuse(what: str, variable: str, pin: Pin, hint: str = "") -> ConfigurationError:
    return ConfigurationError(
        f"refused {what}: {pin.source} pins it",
        variable=variable,
        hint=hint
        or f"unset {variable} (the pinned value applies); the seller's pin cannot be "
        "changed from the task's environment or command line",
    )


# -- the image's pin file ---------------------------------------------------------------------


def mount_points(mountinfo: str = MOUNTINFO) -> set[str]:
    """Mount points of this process's mount namespace (``/proc/self/mountinfo``, field 5)."""
    try:
        with open(mountinfo, encoding="utf-8", errors="surrogateescape") as handle:
            lines = handle.read(4 * 1024 * 1024).splitlines()
    except OSError:
        logger.debug("no %s: mounts over the pin file are not checked", mountinfo)
        return set()
    points = set()
    for line in lines:
        fields = line.split(" ")
        if len(fields) > 4:
            points.add(_OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), fields[4]))
    return points


def check_not_mounted_over(path: Path, mountinfo: str = MOUNTINFO) -> None:
    """Refuse when a volume is mounted over the pin file or the package directory holding it."""
    points = mount_points(mountinfo)
    for candidate in (path, path.parent):
        if str(candidate) in points:
            raise ConfigurationError(
                f"refused: a volume is mounted over {candidate}, where the seller's pin file is",
                hint="the pin file is part of the image; remove that volume mount from the task "
                "definition or pod spec",
            )


def read_pin_file(path: Path | None = None, *, mountinfo: str = MOUNTINFO) -> Pin | None:
    """Read the image's pin file; None when there is none. Raise ConfigurationError if unusable."""
    path = pin_file_path() if path is None else path
    check_not_mounted_over(path, mountinfo)
    if not os.path.lexists(path):
        return None
    source = f"the image's pin file {path}"
    data = read_bounded_file(str(path), source, MAX_PIN_BYTES)
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as error:
        raise ConfigurationError(f"{source} is not JSON: {error}") from error
    if not isinstance(document, dict) or document.get("format") != PIN_FORMAT:
        raise ConfigurationError(
            f"{source} is not a pin file of format {PIN_FORMAT}",
            hint="rewrite it with `marketplace-entitlement pin` when building the image",
        )
    return _pin_from_document(document, source)


def _pin_from_document(document: Mapping[str, Any], source: str) -> Pin:
    """A pin from the file's JSON.

    A file without ``pricing`` (written before pricing could be pinned) pins no pricing (the
    default, hourly, applies unless a variable chooses) and needs its key, exactly as before.
    """
    product_code = document.get("product_code")
    version = document.get("public_key_version")
    pem = document.get("public_key")
    pricing = document.get("pricing")
    raw_dimensions = document.get("dimensions")
    if pricing is not None:
        if not isinstance(pricing, str):
            raise ConfigurationError(f"{source}: pricing is not text")
        pricing = parse_pricing(pricing, f"{source}: pricing")
    dimensions = None
    if raw_dimensions is not None:
        if not isinstance(raw_dimensions, list):
            raise ConfigurationError(f"{source}: dimensions is not a list of names")
        dimensions = parse_dimension_list(raw_dimensions, f"{source}: dimensions")
    if pricing is not None:
        check_pricing_pin(pricing, dimensions, source)
    elif dimensions is not None:
        raise ConfigurationError(f"{source} pins dimensions but no pricing")
    key_optional = pricing == "custom"
    if not isinstance(product_code, str) or not (
        isinstance(pem, str) or (key_optional and pem is None)
    ):
        raise ConfigurationError(f"{source} lacks product_code or public_key")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
        raise ConfigurationError(f"{source}: public_key_version is not a whole number")
    if version is not None and pem is None:
        raise ConfigurationError(f"{source} pins public_key_version but no public_key")
    return Pin(
        source=source,
        product_code=parse_product_code(product_code, source),
        public_key=None if pem is None else load_public_key_pem(pem.encode(), source),
        public_key_version=None if version is None else parse_positive_int(str(version), source),
        pricing=pricing,
        dimensions=dimensions,
    )


def write_pin_file(
    path: Path,
    *,
    product_code: str,
    public_key_pem: bytes | None,
    public_key_version: int | None,
    pricing: str = "hourly",
    dimensions: tuple[str, ...] | None = None,
) -> Path:
    """Write a pin file (``marketplace-entitlement pin``), readable by everyone, after checking it.

    The pricing is always written (``hourly`` by default), so a new pin file always pins it; the
    key is required for hourly pricing and optional for custom pricing (MeterUsage has no token).
    """
    if pricing == "custom" and not dimensions:
        raise ConfigurationError(
            "--pricing custom needs --dimensions", variable="--dimensions",
            hint="list the dimension API names of your listing, comma-separated",
        )  # fmt: skip
    if pricing == "hourly" and dimensions:
        raise ConfigurationError(
            "--dimensions needs --pricing custom (hourly pricing has no dimensions)",
            variable="--pricing",
        )
    if public_key_pem is None and pricing != "custom":
        raise ConfigurationError(
            "--public-key-file is required for --pricing hourly (RegisterUsage's token is "
            "verified with it)",
            hint="pass the product's public key from AWS, or --pricing custom for a product "
            "priced by custom dimensions",
        )
    if public_key_pem is None and public_key_version is not None:
        raise ConfigurationError("--public-key-version needs --public-key-file")
    if public_key_pem is not None:  # the same checks as at runtime: no demo, no tiny key
        load_public_key_pem(public_key_pem, "--public-key-file")
    document = {
        "format": PIN_FORMAT,
        "product_code": parse_product_code(product_code, "--product-code"),
        "public_key_version": public_key_version,
        "public_key": None if public_key_pem is None else public_key_pem.decode("ascii"),
        "pricing": pricing,
        "dimensions": None if dimensions is None else list(dimensions),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2)
        handle.write("\n")
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)
    return path


def pinned_dimensions() -> tuple[str, ...]:
    """The dimensions the image's pin file pins (none: empty).

    For ``record`` and ``record_usage`` outside ``run`` when ``MARKETPLACE_DIMENSIONS`` is not set
    (under ``run`` CMD gets them in its environment).
    """
    pin = read_pin_file()
    return () if pin is None or pin.dimensions is None else pin.dimensions


# -- pins given in code -----------------------------------------------------------------------


def pin_from_code(overrides: dict[str, Any]) -> Pin | None:
    """Take the pinnable settings out of an application's keyword arguments, as a Pin.

    A key given in code cannot be combined with ``verify_signature=False`` (refused).
    """
    given = {name: overrides.pop(name) for name in PINNABLE if overrides.get(name) is not None}
    if not given:
        return None
    source = "the application's code"
    if "public_key" in given and "public_key_file" in given:
        raise ConfigurationError(
            "the application passes both public_key and public_key_file", variable=None
        )
    key = None
    if "public_key" in given:
        key = load_key_object(given["public_key"], "public_key (in code)")
    elif "public_key_file" in given:
        key = read_public_key_file(str(given["public_key_file"]), "public_key_file (in code)")
    verify = overrides.get("verify_signature")
    if isinstance(verify, str):
        verify = parse_bool(verify, "verify_signature (in code)")
    if key is not None and verify is not None and not verify:
        raise ConfigurationError(
            "verify_signature cannot be turned off by code that passes a public key",
            hint="pass allow_unverified=True to require_entitlement for local development "
            "instead, and no key",
        )
    version = given.get("public_key_version")
    if version is not None:
        version = parse_positive_int(str(version), "public_key_version (in code)")
    product_code = given.get("product_code")
    pricing = given.get("pricing")
    if pricing is not None:
        pricing = parse_pricing(str(pricing), "pricing (in code)")
    dimensions = given.get("dimensions")
    if dimensions is not None:
        dimensions = parse_dimension_list(dimensions, "dimensions (in code)")
    return Pin(
        source=source,
        product_code=None
        if product_code is None
        else parse_product_code(str(product_code), "product_code (in code)"),
        public_key=key,
        public_key_version=version,
        pricing=pricing,
        dimensions=dimensions,
    )


def load_key_object(value: Any, what: str) -> RSAPublicKey:
    """A key given in code: a cryptography RSAPublicKey, or PEM / base64-of-PEM text or bytes."""
    from cryptography.hazmat.primitives.asymmetric.rsa import (  # noqa: PLC0415
        RSAPublicKey,
    )

    from marketplace_entitlement._parsers import (  # noqa: PLC0415  (the same parser as the env)
        check_public_key,
        parse_public_key,
    )

    if isinstance(value, RSAPublicKey):
        return check_public_key(value, what)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        raise ConfigurationError(f"{what} is a {type(value).__name__}, not a key or PEM text")
    return parse_public_key(value, what)


def combine(code: Pin | None, image: Pin | None) -> Pin | None:
    """The code's pin and the image's pin together; where both pin a value, they must agree."""
    if code is None or image is None:
        return code or image
    for name in ("product_code", "public_key_version", "pricing", "dimensions"):
        ours, theirs = getattr(code, name), getattr(image, name)
        if name == "dimensions" and ours is not None and theirs is not None:
            ours, theirs = sorted(ours), sorted(theirs)  # compared as sets, like the environment
        if ours is not None and theirs is not None and ours != theirs:
            raise ConfigurationError(
                f"the application's code and the image's pin file pin different {name}s "
                f"({ours!r} and {theirs!r})",
                hint="rebuild the image so that both say the same",
            )
    both = code.public_key is not None and image.public_key is not None
    if both and not same_key(code.public_key, image.public_key):  # type: ignore[arg-type]
        raise ConfigurationError(
            "the application's code and the image's pin file pin different public keys",
            hint="rebuild the image so that both say the same",
        )
    return Pin(
        source=f"{code.source} and {image.source}",
        product_code=code.product_code or image.product_code,
        public_key=code.public_key or image.public_key,
        public_key_version=code.public_key_version or image.public_key_version,
        pricing=code.pricing or image.pricing,
        dimensions=image.dimensions if code.dimensions is None else code.dimensions,
    )


def same_key(one: RSAPublicKey, other: RSAPublicKey) -> bool:
    """Whether two RSA public keys are the same key."""
    return one.public_numbers() == other.public_numbers()


# -- the environment against the pin ------------------------------------------------------------


def enforce(
    pin: Pin,
    supplied: Mapping[str, Any],
    values: dict[str, Any],
    load_key: Callable[[Any, Any], RSAPublicKey | None],
) -> RSAPublicKey | None:
    """Apply ``pin`` to ``values``; refuse any supplied setting that contradicts it.

    ``supplied`` holds what the environment or the command line set (parsed), by setting name;
    ``load_key(text, path)`` loads a supplied key for comparison. Returns the pinned key, or None
    when no key is pinned (the caller then loads the supplied one as usual).
    """
    if values.get("verify_signature") is False:
        raise _refuse(
            f"{_env.VERIFY_SIGNATURE}=false", _env.VERIFY_SIGNATURE, pin,
            hint="signature verification cannot be turned off in a pinned image or application; "
            f"unset {_env.VERIFY_SIGNATURE}",
        )  # fmt: skip
    for name, variable in (
        ("product_code", _env.PRODUCT_CODE),
        ("public_key_version", _env.PUBLIC_KEY_VERSION),
    ):
        pinned = getattr(pin, name)
        if pinned is None:
            continue
        given = supplied.get(name)
        if given is not None and given != pinned:
            raise _refuse(f"{variable}={given!r} (pinned: {pinned!r})", variable, pin)
        values[name] = pinned
    if pin.pricing is not None:
        given = supplied.get("pricing")
        if given is not None and given != pin.pricing:
            raise _refuse(f"{_env.PRICING}={given!r} (pinned: {pin.pricing!r})", _env.PRICING, pin)
        values["pricing"] = pin.pricing
    if pin.dimensions is not None:
        given = supplied.get("dimensions")
        if given is not None and set(given) != set(pin.dimensions):
            raise _refuse(
                f"{_env.DIMENSIONS}={','.join(given)!r} (pinned: {','.join(pin.dimensions)!r})",
                _env.DIMENSIONS,
                pin,
            )
        values["dimensions"] = pin.dimensions
    if pin.public_key is None:
        return None
    text, path = supplied.get("public_key"), supplied.get("public_key_file")
    if text is not None or path is not None:
        variable = _env.PUBLIC_KEY if text is not None else _env.PUBLIC_KEY_FILE
        other = load_key(text, path)
        if other is None or not same_key(other, pin.public_key):
            raise _refuse(
                f"{variable}: it names another public key than the pinned one", variable, pin
            )
    return pin.public_key


# -- the `pin` command ----------------------------------------------------------------------------


def add_pin_command(commands: Any) -> None:
    """Add ``pin`` to the CLI's subcommands (``commands`` is argparse's subparsers action)."""
    pin = commands.add_parser(
        "pin",
        help="at image build time: pin the product code, public key and pricing into the image",
        description="Write the seller's pin file (product code, public key, optionally its "
        "version, the pricing model and, for custom pricing, the dimensions) to pin.json in the "
        "installed package directory. At runtime `run`, `check` and "
        "the import API then refuse environment variables and options that contradict it, and "
        "refuse to turn verification off. Run it in the Dockerfile after installing the package.",
    )
    pin.add_argument("--product-code", required=True, help="the listing's product code")
    pin.add_argument(
        "--public-key-file",
        default=None,
        help="PEM file of the product's public key from AWS (required for --pricing hourly; "
        "optional for custom, where it is still checked and pinned)",
    )
    pin.add_argument(
        "--pricing",
        default="hourly",
        help="the pricing model: `hourly` (RegisterUsage; default) or `custom` (MeterUsage)",
    )
    pin.add_argument(
        "--dimensions",
        default=None,
        help="comma-separated dimension API names of the listing (required for custom pricing)",
    )
    pin.add_argument(
        "--public-key-version",
        default=None,
        help="pin the PublicKeyVersion too (default: not pinned; the variable may choose it)",
    )
    pin.add_argument(
        "--output",
        default=None,
        help=f"write here instead (to copy into an image later); default {pin_file_path()}",
    )


def run_pin_command(namespace: Any) -> int:
    """``marketplace-entitlement pin``: check and write the pin file; print where it went.

    A refusal is one ``marketplace-entitlement: ...`` line on stderr (``pin`` runs at image build
    time, before any logging is configured) and its exit code (78).
    """
    try:
        return _pin_command(namespace)
    except EntitlementError as error:
        sys.stderr.write(f"marketplace-entitlement: {error.refusal_line()}\n")
        return error.exit_code


def _pin_command(namespace: Any) -> int:
    version = namespace.public_key_version
    pricing = parse_pricing(namespace.pricing, "--pricing")
    dimensions = (
        None
        if namespace.dimensions is None
        else parse_dimension_list(namespace.dimensions, "--dimensions")
    )
    pem = None
    if namespace.public_key_file is not None:
        pem = read_bounded_file(namespace.public_key_file, "--public-key-file", MAX_PIN_BYTES)
    path = write_pin_file(
        Path(namespace.output) if namespace.output else pin_file_path(),
        product_code=namespace.product_code,
        public_key_pem=pem,
        public_key_version=None
        if version is None
        else parse_positive_int(version, "--public-key-version"),
        pricing=pricing,
        dimensions=dimensions,
    )
    pinned = f"{namespace.product_code}, {pricing} pricing"
    if dimensions:
        pinned += f" ({','.join(dimensions)})"
    if pem is not None:
        pinned += " and its key"
    sys.stdout.write(f"marketplace-entitlement: pinned {pinned} in {path}\n")
    return 0

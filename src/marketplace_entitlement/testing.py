"""Pytest fixtures that run the Metering Service emulator, so sellers can test offline.

Installed as a ``pytest11`` plugin: once ``marketplace-entitlement`` is installed, any test can ask
for ``metering_emulator`` (a started ``Emulator``) and ``metering_env`` (the environment that points
botocore and the gate at it). Importing this module starts nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from marketplace_entitlement import _env

if TYPE_CHECKING:
    from marketplace_entitlement.emulator import Emulator

ENDPOINT_VARIABLE = "AWS_ENDPOINT_URL_MARKETPLACE_METERING"
DEFAULT_REGION = "us-east-1"
# The product code metering_env sets: entitled while the emulator has no products configured (its
# default: every well-formed code is entitled), or once a test sets it to "entitled".
DEFAULT_PRODUCT_CODE = "prod-emulator-test"
DUMMY_ACCESS_KEY_ID = "AKIDEMULATOR"
DUMMY_SECRET_ACCESS_KEY = "emulator-secret"  # noqa: S105  (a dummy the emulator accepts)

__all__ = [
    "DEFAULT_PRODUCT_CODE",
    "DEFAULT_REGION",
    "DUMMY_ACCESS_KEY_ID",
    "DUMMY_SECRET_ACCESS_KEY",
    "ENDPOINT_VARIABLE",
    "metering_emulator",
    "metering_emulator_private_key",
    "metering_env",
]


@pytest.fixture(scope="session")
def metering_emulator_private_key() -> bytes:
    """One RSA-3072 private key (PEM) for the whole session: generating one costs about a second."""
    from marketplace_entitlement.emulator._keys import (  # noqa: PLC0415  (nothing at import)
        generate_private_key,
        private_key_pem,
    )

    return private_key_pem(generate_private_key())


@pytest.fixture
def metering_emulator(metering_emulator_private_key: bytes) -> Iterator[Emulator]:
    """A started ``Emulator`` on a free loopback port, signing with the session's key."""
    from marketplace_entitlement.emulator import Emulator  # noqa: PLC0415  (nothing at import)

    with Emulator(keys={1: metering_emulator_private_key}) as emulator:
        yield emulator


@pytest.fixture
def metering_env(metering_emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point botocore and the gate at ``metering_emulator`` through the environment.

    Sets the endpoint override, dummy credentials, the region (the emulator's, else us-east-1),
    ``MARKETPLACE_PUBLIC_KEY_FILE`` and ``MARKETPLACE_PRODUCT_CODE`` (``DEFAULT_PRODUCT_CODE``,
    which the emulator entitles unless a test configures products of its own); removes profile
    and session-token variables that would take precedence. Returns the variables it set (merge
    them into a subprocess's environment).
    """
    region = metering_emulator.region or DEFAULT_REGION
    values = {
        ENDPOINT_VARIABLE: metering_emulator.endpoint,
        "AWS_ACCESS_KEY_ID": DUMMY_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET_ACCESS_KEY,
        _env.AWS_REGION: region,
        _env.AWS_DEFAULT_REGION: region,
        "AWS_EC2_METADATA_DISABLED": "true",
        _env.PUBLIC_KEY_FILE: str(metering_emulator.public_key_file),
        _env.PRODUCT_CODE: DEFAULT_PRODUCT_CODE,
    }
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values

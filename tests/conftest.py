"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from marketplace_entitlement.emulator import Emulator
from tests.keys import generate_key, private_pem
from tests.loopback import emulator_env

# A real PostgreSQL server (session-scoped, started on first use) for the store and SaaS tests.
pytest_plugins = ["tests.postgres"]


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    """One RSA-3072 key for the session (generation takes about a second)."""
    return generate_key()


@pytest.fixture(scope="session")
def other_rsa_key() -> rsa.RSAPrivateKey:
    """A second, unrelated RSA-3072 key, for "signed with the wrong key" cases."""
    return generate_key()


@pytest.fixture
def service(rsa_key: rsa.RSAPrivateKey) -> Iterator[Emulator]:
    """A running emulator signing with the session key, RegisterUsage unthrottled (tests set limits)."""
    with Emulator(keys={1: private_pem(rsa_key)}, rate_limits={"RegisterUsage": None}) as emulator:
        yield emulator


@pytest.fixture
def aws_env(service: Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """Point botocore and the gate at ``service``; return the environment for subprocesses too.

    botocore reads its endpoint override and credentials from ``os.environ``, so they are set with
    monkeypatch; config files are pointed at nothing so this machine's ~/.aws cannot interfere.
    """
    key_file = tmp_path / "public-key.pem"
    key_file.write_bytes(service.public_key_pem(1))
    return emulator_env(
        monkeypatch,
        tmp_path,
        endpoint=service.endpoint,
        access_key_id="AKIDTESTGATE",
        marketplace={
            "MARKETPLACE_PRODUCT_CODE": "prod-test123",
            "MARKETPLACE_PUBLIC_KEY_FILE": str(key_file),
        },
    )

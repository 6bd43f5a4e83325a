"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from marketplace_entitlement.emulator import Emulator
from tests.keys import generate_key, private_pem

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
    values = {
        "AWS_ENDPOINT_URL_MARKETPLACE_METERING": service.endpoint,
        "AWS_ACCESS_KEY_ID": "AKIDTESTGATE",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "MARKETPLACE_PRODUCT_CODE": "prod-test123",
        "MARKETPLACE_PUBLIC_KEY_FILE": str(key_file),
        "MARKETPLACE_LOG_FORMAT": "json",
    }
    for name in ("AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name in [n for n in os.environ if n.startswith("MARKETPLACE_")]:
        monkeypatch.delenv(name)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return dict(os.environ)

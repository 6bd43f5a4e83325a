"""Fixtures for the SaaS tests: an emulator, a botocore client, and the environment to reach it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.config import Config

from marketplace_entitlement.emulator import Emulator


@pytest.fixture
def saas_emulator(metering_emulator_private_key: bytes) -> Iterator[Emulator]:
    """A started emulator with BatchMeterUsage unthrottled (tests that need a quota set one)."""
    with Emulator(
        keys={1: metering_emulator_private_key}, rate_limits={"BatchMeterUsage": None}
    ) as emulator:
        yield emulator


@pytest.fixture
def saas_env(
    saas_emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The environment of a SaaS seller's process pointed at ``saas_emulator`` (no product code).

    Set in ``os.environ`` too (botocore reads its endpoint and credentials there); returned whole
    for subprocesses.
    """
    values = {
        "AWS_ENDPOINT_URL_MARKETPLACE_METERING": saas_emulator.endpoint,
        "AWS_ACCESS_KEY_ID": "AKIDSAAS",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "MARKETPLACE_LOG_FORMAT": "json",
    }
    for name in ("AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name in [n for n in os.environ if n.startswith("MARKETPLACE_")]:
        monkeypatch.delenv(name)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return dict(os.environ)


@pytest.fixture
def saas_client(saas_emulator: Emulator) -> Any:
    """A botocore client for ``saas_emulator`` (one attempt: our retry policy owns retries)."""
    return botocore.session.get_session().create_client(
        "meteringmarketplace",
        region_name="us-east-1",
        endpoint_url=saas_emulator.endpoint,
        aws_access_key_id="AKIDSAAS",
        aws_secret_access_key="secret",
        config=Config(retries={"total_max_attempts": 1}),
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def usage_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh usage store of each backend (PostgreSQL: a real server, a schema of its own)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/usage.sqlite3"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite usage store (for tests whose subject is not the backend)."""
    return f"sqlite:///{tmp_path}/usage.sqlite3"

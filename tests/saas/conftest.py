"""Fixtures for the SaaS tests: an emulator, a botocore client, and the environment to reach it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.loopback import emulator_client, emulator_env

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
    return emulator_env(
        monkeypatch,
        tmp_path,
        endpoint=saas_emulator.endpoint,
        access_key_id="AKIDSAAS",
        marketplace={},
    )


@pytest.fixture
def saas_client(saas_emulator: Emulator) -> Any:
    """A botocore client for ``saas_emulator`` (one attempt: our retry policy owns retries)."""
    return emulator_client(saas_emulator.endpoint, access_key_id="AKIDSAAS", secret="secret")


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

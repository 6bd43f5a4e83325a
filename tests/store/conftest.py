"""The ``store_url`` fixture: every backend the contract tests run against (one param each)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from marketplace_entitlement.store import UsageStore, open_store


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL naming a fresh, empty store of one backend (PostgreSQL: a schema of its own)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state/usage.sqlite3"
    if request.param == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    raise AssertionError(f"unknown backend {request.param}")  # pragma: no cover


@pytest.fixture
def store(store_url: str) -> Iterator[UsageStore]:
    """An open store on ``store_url``, closed after the test."""
    opened = open_store(store_url)
    yield opened
    opened.close()

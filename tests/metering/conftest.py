"""Fixtures of the metering tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faketime import FakeClock, fake_clock


@pytest.fixture
def clock(request: pytest.FixtureRequest) -> Iterator[FakeClock]:
    """A shared fake clock; a test sets start and speed with ``@pytest.mark.clock(start, speed)``."""
    marker = request.node.get_closest_marker("clock")
    start, speed = marker.args if marker else ("2026-12-01 10:50:00", 120)
    with fake_clock(start, speed) as shared:
        yield shared


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    """The task-scoped volume: where the usage store lives across container restarts."""
    return tmp_path / "task-volume" / "metering"

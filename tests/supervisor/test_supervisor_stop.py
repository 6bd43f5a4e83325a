"""request_stop() from another thread stops the command: SIGTERM, a grace period, then SIGKILL."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.supervisor.supervised import Supervised, child


@pytest.mark.pid1
def test_request_stop_sends_sigterm_then_sigkill_to_a_command_that_ignores_it(
    tmp_path: Path,
) -> None:
    """A command that survives SIGTERM is killed after the grace period: status 137."""
    ready = tmp_path / "ready"
    command = child("signal_echo.py", "--ready-file", str(ready))
    flags = ["--request-stop-when", str(ready), "--stop-grace-period", "0.5"]
    with Supervised(command, *flags) as supervised:
        supervised.expect(f"child {signal.SIGTERM}")
        assert supervised.wait() == 128 + signal.SIGKILL
        assert "sending SIGKILL" in supervised.stderr


@pytest.mark.pid1
def test_request_stop_returns_the_status_the_command_exits_with(tmp_path: Path) -> None:
    """A command that exits on SIGTERM decides the status: here 0, and no SIGKILL is sent."""
    ready = tmp_path / "ready"
    command = child("signal_echo.py", "--ready-file", str(ready), "--exit-on", "SIGTERM:0")
    with Supervised(command, "--request-stop-when", str(ready)) as supervised:
        supervised.expect(f"child {signal.SIGTERM}")
        assert supervised.wait() == 0
        assert "sending SIGKILL" not in supervised.stderr


def test_request_stop_when_not_pid1(tmp_path: Path) -> None:
    """Not as PID 1, request_stop() works the same: SIGTERM reaches the command, 143 if it dies."""
    ready = tmp_path / "ready"
    command = ["sh", "-c", f'touch "{ready}"; exec sleep 600']
    with Supervised(command, "--request-stop-when", str(ready), pid1=False) as supervised:
        assert supervised.wait() == 128 + signal.SIGTERM

"""Orphans are adopted and reaped; what the command leaves in its group is ended when it exits."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.supervisor.supervised import Supervised, alive, child, run

ORPHANS = 100


@pytest.mark.pid1
def test_a_hundred_orphans_leave_no_zombie_as_pid1() -> None:
    """As PID 1, 100 double-forked orphans are adopted by the supervisor and all reaped."""
    status, stdout, _ = run(child("orphans.py", str(ORPHANS)))
    assert stdout.splitlines() == [f"adopted {ORPHANS}/{ORPHANS}", "zombies 0"]
    assert status == 0


def test_a_hundred_orphans_leave_no_zombie_as_subreaper() -> None:
    """Not as PID 1, the supervisor is a child subreaper: it adopts the orphans and reaps them."""
    status, stdout, _ = run(child("orphans.py", str(ORPHANS)), pid1=False)
    assert stdout.splitlines() == [f"adopted {ORPHANS}/{ORPHANS}", "zombies 0"]
    assert status == 0


def _pid_from(path: Path) -> int:
    return int(path.read_text())


@pytest.mark.parametrize("ignore_term", [False, True], ids=["exits-on-term", "ignores-term"])
def test_processes_left_in_the_group_are_ended_within_the_leftover_grace_period(
    tmp_path: Path, ignore_term: bool
) -> None:
    """With a leftover grace period, the rest of the group gets SIGTERM, then SIGKILL, and is reaped."""
    pidfile = tmp_path / "grandchild.pid"
    extra = ["--ignore-term"] if ignore_term else []
    command = child("leftover.py", str(pidfile), *extra)
    status, _, stderr = run(command, "--leftover-grace-period", "0.5", pid1=False)
    assert status == 5
    assert not alive(_pid_from(pidfile))
    assert ("sending SIGKILL" in stderr) == ignore_term


def test_by_default_the_rest_of_the_group_gets_sigterm_and_the_wrapper_exits_at_once(
    tmp_path: Path,
) -> None:
    """Default (as dumb-init): SIGTERM to what is left of the group, no waiting, no SIGKILL.

    A grandchild that ignores SIGTERM is still alive after the wrapper exited (not PID 1; as PID 1
    the kernel ends it with the namespace).
    """
    pidfile = tmp_path / "grandchild.pid"
    status, _, stderr = run(child("leftover.py", str(pidfile), "--ignore-term"), pid1=False)
    grandchild = _pid_from(pidfile)
    try:
        assert status == 5
        assert "sent SIGTERM to the rest of its process group, not waiting" in stderr
        assert "SIGKILL" not in stderr
        assert alive(grandchild)
    finally:
        os.kill(grandchild, signal.SIGKILL)


def test_no_kill_group_leaves_the_rest_of_the_group_running(tmp_path: Path) -> None:
    """With kill_group_on_exit off, a grandchild outlives the command and the supervisor."""
    pidfile = tmp_path / "grandchild.pid"
    status, _, _ = run(child("leftover.py", str(pidfile)), "--no-kill-group", pid1=False)
    grandchild = _pid_from(pidfile)
    try:
        assert status == 5
        assert alive(grandchild)
    finally:
        os.kill(grandchild, signal.SIGKILL)


@pytest.mark.pid1
def test_processes_left_in_the_group_are_ended_as_pid1(tmp_path: Path) -> None:
    """As PID 1 too, the supervisor exits with the command's status once the group is ended."""
    pidfile = tmp_path / "grandchild.pid"
    command = child("leftover.py", str(pidfile), "--ignore-term")
    with Supervised(command, "--leftover-grace-period", "0.5") as supervised:
        assert supervised.wait() == 5
        assert "sending SIGKILL" in supervised.stderr

"""A crash of the wrapper is the wrapper's, and a signal it may not send does not end supervision.

Synchronous fault signals (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP, SIGSYS) keep their
default action, as in tini: a real fault ends the wrapper instead of being forwarded to a healthy
CMD. A forward that fails with EPERM (CMD now runs as another user) is logged, and supervision
goes on, as in dumb-init.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.supervisor.supervised import TIMEOUT, Supervised, child

FAULTS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGABRT}
FAULTS |= {signal.SIGTRAP, signal.SIGSYS}


def _caught_signals(pid: int) -> set[int]:
    """The signals ``pid`` has a handler for (SigCgt in /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            mask = int(line.split()[1], 16)
            return {signum for signum in range(1, 65) if mask & (1 << (signum - 1))}
    raise AssertionError("no SigCgt line")


@pytest.mark.pid1
def test_fault_signals_and_sigpipe_keep_their_default_action() -> None:
    """While supervising, the wrapper handles SIGTERM but not the fault signals or SIGPIPE."""
    with Supervised(child("signal_echo.py")) as supervised:
        supervised.expect("child ready")
        caught = _caught_signals(supervised.supervisor_pid())
        supervised.close_stdin()
        assert supervised.wait() == 0
    assert signal.SIGTERM in caught
    assert not caught & (FAULTS | {signal.SIGPIPE})


def test_a_real_crash_of_the_wrapper_is_not_forwarded_to_cmd(tmp_path: Path) -> None:
    """A thread of the supervisor reads address 0: the supervisor dies of SIGSEGV, CMD gets none.

    (Not PID 1, so that the crash ends the process rather than being ignored by the kernel.)
    """
    ready = tmp_path / "ready"
    command = child("signal_echo.py", "--ready-file", str(ready))
    with Supervised(command, "--crash-when", str(ready), pid1=False) as supervised:
        supervised.expect("child ready")
        code = supervised.process.wait(TIMEOUT)  # CMD, orphaned, still holds stderr open
        supervised.close_stdin()  # CMD exits at end of input
        supervised.wait()
        lines = supervised.seen + supervised.rest_of_stdout()
    assert code == -signal.SIGSEGV
    assert f"child {signal.SIGSEGV}" not in lines


@pytest.mark.pid1
def test_eperm_when_forwarding_is_logged_and_supervision_goes_on() -> None:
    """CMD switched to another user and the wrapper lacks CAP_KILL: forwarding fails with EPERM.

    The wrapper logs it, keeps supervising, and exits with CMD's status once CMD ends.
    """
    without_cap_kill = ["setpriv", "--bounding-set=-kill", "--inh-caps=-kill"]
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    command = [*as_nobody, "sh", "-c", "echo ready; while read line; do :; done; exit 4"]
    with Supervised(command, wrap=without_cap_kill) as supervised:
        supervised.expect("ready")
        supervised.send(signal.SIGUSR1)
        supervised.expect_log("not permitted to send SIGUSR1")
        supervised.send(signal.SIGHUP)
        supervised.close_stdin()
        assert supervised.wait() == 4
        assert "Traceback" not in supervised.stderr

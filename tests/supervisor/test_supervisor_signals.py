"""Every catchable signal the supervisor receives reaches its command (PID 1 tests, black-box)."""

from __future__ import annotations

import signal

import pytest

from tests.supervisor.supervised import Supervised, child

JOB_CONTROL = {signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU}
# Uncatchable, acted on (CHLD), or left at their default action: faults (a real crash must not
# reach CMD) and PIPE (the wrapper's own broken log stream must not reach CMD).
FAULTS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGABRT}
FAULTS |= {signal.SIGTRAP, signal.SIGSYS}
NOT_FORWARDED = {signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD, signal.SIGPIPE} | FAULTS
NORMAL_SIGNALS = [s for s in range(1, 32) if s not in NOT_FORWARDED | JOB_CONTROL]


def _name(signum: int) -> str:
    return signal.Signals(signum).name


@pytest.mark.pid1
def test_every_normal_signal_reaches_the_command_as_pid1() -> None:
    """Signals 1-31 but KILL, STOP, CHLD, PIPE, faults and job control are forwarded, in order."""
    with Supervised(child("signal_echo.py")) as supervised:
        supervised.expect("child ready")
        for signum in NORMAL_SIGNALS:
            supervised.send(signum)
            supervised.expect(f"child {signum}")
        supervised.close_stdin()
        assert supervised.wait() == 0


@pytest.mark.pid1
@pytest.mark.parametrize("signum", sorted(JOB_CONTROL), ids=_name)
def test_job_control_signals_are_forwarded_as_pid1(signum: int) -> None:
    """SIGTSTP, SIGTTIN and SIGTTOU sent to PID 1 reach the command (here it handles them)."""
    with Supervised(child("signal_echo.py")) as supervised:
        supervised.expect("child ready")
        supervised.send(signum)
        supervised.expect(f"child {signum}")
        supervised.close_stdin()
        assert supervised.wait() == 0


@pytest.mark.pid1
def test_real_time_signals_are_forwarded_as_pid1() -> None:
    """Real-time signals are catchable too, so they are forwarded like the others."""
    with Supervised(child("signal_echo.py")) as supervised:
        supervised.expect("child ready")
        for signum in (signal.SIGRTMIN, signal.SIGRTMIN + 5, signal.SIGRTMAX):
            supervised.send(signum)
            supervised.expect(f"child {int(signum)}")
        supervised.close_stdin()
        assert supervised.wait() == 0


def test_signals_reach_the_command_when_not_pid1() -> None:
    """Not as PID 1, signals sent to the supervisor are forwarded just the same."""
    with Supervised(child("signal_echo.py"), pid1=False) as supervised:
        supervised.expect("child ready")
        for signum in (signal.SIGHUP, signal.SIGUSR1, signal.SIGWINCH, signal.SIGINT):
            supervised.send(signum)
            supervised.expect(f"child {signum}")
        supervised.send(signal.SIGTERM)
        supervised.expect(f"child {signal.SIGTERM}")
        supervised.close_stdin()
        assert supervised.wait() == 0


@pytest.mark.pid1
def test_signal_group_reaches_a_grandchild_in_the_group() -> None:
    """With signal_group, a forwarded signal reaches every process in the command's group."""
    command = child("signal_echo.py", "--grandchild")
    with Supervised(command, "--signal-group") as supervised:
        supervised.expect_all("child ready", "grandchild ready")
        supervised.send(signal.SIGUSR1)
        supervised.expect_all(f"child {signal.SIGUSR1}", f"grandchild {signal.SIGUSR1}")
        supervised.close_stdin()
        assert supervised.wait() == 0


@pytest.mark.pid1
def test_without_signal_group_only_the_command_gets_the_signal() -> None:
    """Without signal_group, the command gets the signal and its grandchild does not."""
    command = child("signal_echo.py", "--grandchild")
    with Supervised(command) as supervised:
        supervised.expect_all("child ready", "grandchild ready")
        supervised.send(signal.SIGUSR1)
        supervised.expect(f"child {signal.SIGUSR1}")
        supervised.close_stdin()
        assert supervised.wait() == 0
        assert f"grandchild {signal.SIGUSR1}" not in supervised.seen + supervised.rest_of_stdout()


@pytest.mark.pid1
def test_term_delay_holds_sigterm_back_and_a_second_sigterm_sends_it_at_once() -> None:
    """With term_delay, SIGTERM waits while other signals pass; a second SIGTERM forwards it."""
    with Supervised(child("signal_echo.py"), "--term-delay", "600") as supervised:
        supervised.expect("child ready")
        supervised.send(signal.SIGTERM)
        supervised.expect_log("forwarding it in 600 s")
        supervised.send(signal.SIGUSR1)
        assert supervised.expect(f"child {signal.SIGUSR1}") == [f"child {signal.SIGUSR1}"]
        supervised.send(signal.SIGTERM)
        supervised.expect(f"child {signal.SIGTERM}", timeout=10)  # promptly, not after 600 s
        supervised.close_stdin()
        assert supervised.wait() == 0
        assert supervised.seen.count(f"child {signal.SIGTERM}") == 1


@pytest.mark.pid1
def test_sigint_during_term_delay_forwards_sigterm_at_once() -> None:
    """A SIGINT during the term delay forwards the held SIGTERM at once, then the SIGINT.

    Both reach CMD (well before the 600 s delay). The order CMD sees them in is the kernel's when
    both are pending at once (lower numbers first), so only the wrapper's log is checked for it.
    """
    with Supervised(child("signal_echo.py"), "--term-delay", "600") as supervised:
        supervised.expect("child ready")
        supervised.send(signal.SIGTERM)
        supervised.expect_log("forwarding it in 600 s")
        supervised.send(signal.SIGINT)
        supervised.expect_all(f"child {signal.SIGTERM}", f"child {signal.SIGINT}", timeout=10)
        supervised.expect_log("forwarded SIGINT")
        stderr = supervised.stderr
        assert stderr.index("forwarded SIGTERM") < stderr.index("forwarded SIGINT")
        supervised.close_stdin()
        assert supervised.wait() == 0


@pytest.mark.pid1
def test_term_delay_forwards_sigterm_once_the_delay_is_over() -> None:
    """With a short term_delay and nothing else happening, SIGTERM is forwarded after it."""
    command = child("signal_echo.py", "--exit-on", "SIGTERM:0")
    with Supervised(command, "--term-delay", "0.3") as supervised:
        supervised.expect("child ready")
        supervised.send(signal.SIGTERM)
        supervised.expect(f"child {signal.SIGTERM}")
        assert supervised.wait() == 0


@pytest.mark.pid1
def test_rewrite_delivers_the_replacement_signal() -> None:
    """With rewrite TERM:QUIT the command receives SIGQUIT when the supervisor gets SIGTERM."""
    command = child("signal_echo.py", "--exit-on", "SIGQUIT:9")
    with Supervised(command, "--rewrite", "TERM:QUIT") as supervised:
        supervised.expect("child ready")
        supervised.send(signal.SIGTERM)
        assert supervised.expect(f"child {signal.SIGQUIT}") == [f"child {signal.SIGQUIT}"]
        assert supervised.wait() == 9


@pytest.mark.pid1
def test_rewrite_to_zero_drops_the_signal() -> None:
    """A rewrite to 0 drops the signal: SIGHUP never arrives, a later SIGUSR1 does."""
    with Supervised(child("signal_echo.py"), "--rewrite", "HUP:0") as supervised:
        supervised.expect("child ready")
        supervised.send(signal.SIGHUP)
        supervised.send(signal.SIGUSR1)
        assert supervised.expect(f"child {signal.SIGUSR1}") == [f"child {signal.SIGUSR1}"]
        supervised.close_stdin()
        assert supervised.wait() == 0


@pytest.mark.pid1
def test_stopped_command_is_resumed_by_sigterm_as_pid1() -> None:
    """As PID 1, a stopped command gets SIGCONT after SIGTERM, so it can act on it and exit."""
    command = child("signal_echo.py", "--stop-self", "--exit-on", "SIGTERM:3")
    with Supervised(command) as supervised:
        supervised.expect("child stopping")
        supervised.expect_log("the command was stopped by SIGSTOP")
        supervised.send(signal.SIGTERM)
        supervised.expect(f"child {signal.SIGTERM}")
        assert supervised.wait() == 3


@pytest.mark.pid1
def test_sigcont_resumes_a_stopped_command() -> None:
    """SIGCONT sent to PID 1 is forwarded, so a stopped command can be resumed by hand."""
    with Supervised(child("signal_echo.py", "--stop-self")) as supervised:
        supervised.expect("child stopping")
        supervised.expect_log("the command was stopped by SIGSTOP")
        supervised.send(signal.SIGCONT)
        supervised.expect("child resumed")
        supervised.close_stdin()
        assert supervised.wait() == 0

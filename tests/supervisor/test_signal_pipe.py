"""Unit tests of the signal plumbing: names and numbers, and the self-pipe SignalPipe."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from marketplace_entitlement.supervision._signals import SignalPipe, signal_from_name, signal_name
from marketplace_entitlement.supervision._supervisor import SupervisorOptions


@pytest.mark.parametrize("text", ["TERM", "SIGTERM", "sigterm", "term", "15", " SIGTERM "])
def test_signal_from_name_accepts_names_with_or_without_sig_and_numbers(text: str) -> None:
    """TERM, SIGTERM, sigterm and 15 all mean SIGTERM."""
    assert signal_from_name(text) == signal.SIGTERM


def test_signal_from_name_accepts_real_time_offsets() -> None:
    """RTMIN+N and SIGRTMAX-N name real-time signals."""
    assert signal_from_name("RTMIN+2") == signal.SIGRTMIN + 2
    assert signal_from_name("SIGRTMAX-1") == signal.SIGRTMAX - 1
    assert signal_from_name("rtmin") == signal.SIGRTMIN


@pytest.mark.parametrize("text", ["", "FOO", "SIGFOO", "0", "65", "-15", "TERM15", "SIG", "1.5"])
def test_signal_from_name_rejects_anything_else(text: str) -> None:
    """Unknown names, 0, out-of-range numbers and junk raise ValueError."""
    with pytest.raises(ValueError, match="unknown signal"):
        signal_from_name(text)


@pytest.mark.parametrize(
    ("signum", "name"),
    [(signal.SIGTERM, "SIGTERM"), (signal.SIGKILL, "SIGKILL"), (signal.SIGRTMIN, "SIGRTMIN")],
)
def test_signal_name_gives_the_conventional_name(signum: int, name: str) -> None:
    """signal_name(15) is SIGTERM."""
    assert signal_name(signum) == name


def test_signal_name_and_signal_from_name_round_trip_for_every_signal() -> None:
    """Every valid signal's name parses back to its number, real-time ones included."""
    for signum in signal.valid_signals():
        assert signal_from_name(signal_name(signum)) == signum


@pytest.mark.parametrize("signum", [0, 32, 65, -1])
def test_signal_name_rejects_numbers_that_are_no_signal(signum: int) -> None:
    """Numbers that name no signal raise ValueError."""
    with pytest.raises(ValueError, match="no signal"):
        signal_name(signum)


def test_signal_pipe_reports_signals_in_the_order_they_arrived() -> None:
    """Signals sent to the process come out of wait() as their numbers, in order."""
    with SignalPipe() as signals:
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGUSR2)
        received: list[int] = []
        while len(received) < 2:
            received += signals.wait(timeout=10)
    assert received == [signal.SIGUSR1, signal.SIGUSR2]


def test_signal_pipe_notify_wakes_wait_from_another_thread_with_no_signal() -> None:
    """notify() from another thread makes wait() return an empty list before its timeout."""
    with SignalPipe() as signals:
        threading.Timer(0.05, signals.notify).start()
        assert signals.wait(timeout=30) == []


def test_signal_pipe_wait_returns_empty_after_its_timeout() -> None:
    """With nothing happening, wait(timeout) returns an empty list."""
    with SignalPipe() as signals:
        assert signals.wait(timeout=0.01) == []


def test_signal_pipe_restores_the_previous_handlers() -> None:
    """Leaving the context puts back every handler it replaced."""

    def previous(signum: int, frame: object) -> None:
        """A handler to be restored."""

    old = signal.signal(signal.SIGUSR1, previous)
    try:
        with SignalPipe():
            assert signal.getsignal(signal.SIGUSR1) is not previous
        assert signal.getsignal(signal.SIGUSR1) is previous
    finally:
        signal.signal(signal.SIGUSR1, old)


def test_signal_pipe_must_be_entered_from_the_main_thread() -> None:
    """Outside the main thread, entering raises ValueError and installs nothing."""
    errors: list[BaseException] = []

    def enter() -> None:
        try:
            with SignalPipe():
                pass
        except ValueError as error:
            errors.append(error)

    before = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=enter)
    thread.start()
    thread.join()
    assert len(errors) == 1
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.parametrize(
    "kwargs",
    [{"term_delay": -1.0}, {"stop_grace_period": -0.5}, {"rewrite": {signal.SIGTERM: 999}}],
)
def test_supervisor_options_refuse_impossible_values(kwargs: dict[str, object]) -> None:
    """Negative durations and rewrites to a signal that does not exist raise ValueError."""
    with pytest.raises(ValueError, match=r"must be|cannot rewrite"):
        SupervisorOptions(**kwargs)  # type: ignore[arg-type]

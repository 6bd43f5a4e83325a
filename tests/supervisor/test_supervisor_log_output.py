"""Supervision never waits on its log output, and a broken or closed log never changes the outcome.

Log lines go through a bounded queue to one writer thread (see the supervision docs): a full pipe
on stderr drops lines (counted) instead of stopping the loop, a reader that went away (EPIPE) drops
them all, and the wrapper's own SIGPIPE is never forwarded to CMD.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import select
import signal
import threading
from collections.abc import Iterator

import pytest

from marketplace_entitlement._logging import StderrHandler, TextFormatter
from tests.supervisor.supervised import TIMEOUT, Supervised, child, entrypoint_environment

ORPHANS = 50


@pytest.fixture
def full_pipe() -> Iterator[tuple[int, int]]:
    """A pipe (read end, write end) whose buffer is already full: every write to it blocks."""
    read_end, write_end = os.pipe()
    flags = fcntl.fcntl(write_end, fcntl.F_GETFL)
    fcntl.fcntl(write_end, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    try:
        while True:
            os.write(write_end, b"x" * 65536)
    except BlockingIOError:
        pass
    fcntl.fcntl(write_end, fcntl.F_SETFL, flags)
    yield read_end, write_end
    os.close(read_end)
    os.close(write_end)


@pytest.mark.pid1
def test_a_full_stderr_pipe_does_not_stop_reaping(full_pipe: tuple[int, int]) -> None:
    """With stderr's pipe full, the loop still reaps: 50 orphans leave no zombie, CMD's status 0.

    The wrapper logs at debug level (a line per orphan reaped), all into a pipe nobody reads.
    """
    _, write_end = full_pipe
    with Supervised(child("orphans.py", str(ORPHANS)), stderr=write_end) as supervised:
        supervised.expect(f"adopted {ORPHANS}/{ORPHANS}")
        supervised.expect("zombies 0")
        assert supervised.wait() == 0


@pytest.mark.pid1
def test_a_vanished_stderr_reader_neither_loops_nor_changes_the_status() -> None:
    """The stderr reader is gone (EPIPE): no SIGPIPE reaches CMD, and run exits with CMD's 0.

    One forwarded signal makes the wrapper log; with the old SIGPIPE handler that write fed a
    SIGPIPE -> forward -> log -> SIGPIPE loop.
    """
    read_end, write_end = os.pipe()
    os.close(read_end)
    command = child("signal_echo.py", "--exit-on", "SIGUSR1:0")
    try:
        with Supervised(command, stderr=write_end) as supervised:
            supervised.expect("child ready")
            supervised.send(signal.SIGUSR1)
            code = supervised.wait()
            lines = supervised.seen + supervised.rest_of_stdout()
    finally:
        os.close(write_end)
    assert code == 0
    assert f"child {signal.SIGUSR1}" in lines
    assert f"child {signal.SIGPIPE}" not in lines


def test_only_shutdown_signals_are_logged_at_info_when_forwarded() -> None:
    """At level info, a forwarded SIGUSR1 or SIGWINCH writes no line; a forwarded SIGTERM does.

    Full-screen terminal apps get no log lines in the middle of their screen from the signals a
    terminal sends; the signals that end CMD stay visible in container logs.
    """
    env = {**entrypoint_environment(), "MARKETPLACE_LOG_LEVEL": "info"}
    command = child("signal_echo.py", "--exit-on", "SIGTERM:0")
    with Supervised(command, env=env, pid1=False) as supervised:
        supervised.expect("child ready")
        for signum in (signal.SIGUSR1, signal.SIGWINCH, signal.SIGCONT, signal.SIGTERM):
            supervised.send(signum)
            if signum != signal.SIGCONT:  # signal_echo cannot tell a SIGCONT it was not stopped for
                supervised.expect(f"child {signum}")
        assert supervised.wait() == 0
        stderr = supervised.stderr
    assert "forwarded SIGTERM" in stderr
    for name in ("SIGUSR1", "SIGWINCH", "SIGCONT"):
        assert f"forwarded {name}" not in stderr


def _record(message: str) -> logging.LogRecord:
    return logging.LogRecord(
        "marketplace_entitlement", logging.INFO, __file__, 0, message, (), None
    )


def test_a_full_queue_drops_lines_and_reports_how_many(full_pipe: tuple[int, int]) -> None:
    """With the pipe full, ``emit`` never blocks: lines beyond the queue are dropped and counted.

    Once a reader drains the pipe, every one of the 40 lines was either written or counted in the
    "N log lines were dropped" line the writer adds.
    """
    read_end, write_end = full_pipe
    handler = StderrHandler(write_end, capacity=5)
    handler.setFormatter(TextFormatter())
    for index in range(40):
        handler.emit(_record(f"line {index}"))  # returns although nothing can be written
    assert handler.dropped > 0
    received = bytearray()
    done = threading.Event()

    def drain() -> None:
        while not done.is_set():
            if select.select([read_end], [], [], 0.05)[0]:
                received.extend(os.read(read_end, 65536))

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        handler.flush(timeout=TIMEOUT)
    finally:
        done.set()
        reader.join()
    text = bytes(received).replace(b"x", b"").decode()
    written = re.findall(r"info: line (\d+)", text)
    reported = sum(int(n) for n in re.findall(r"(\d+) log lines were dropped", text))
    assert reported > 0
    assert len(written) + reported == 40

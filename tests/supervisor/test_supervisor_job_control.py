"""On a terminal: Ctrl-Z and ``fg`` work under a job-control shell, and nothing hangs without one.

Each case runs on a new pseudo-terminal (Python's ``pty`` module) as its controlling terminal: an
interactive bash (job control), ``stty tostop``, a session led by the wrapper itself (``ssh -t``,
``script``) and tini as PID 1 with a terminal (``docker run --init -it``).
"""

from __future__ import annotations

import contextlib
import os
import pty
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.supervisor.supervised import HARNESS, PYTHON, TIMEOUT, skip_unless_pid1, wait_until

BASH = ["bash", "--norc", "--noprofile", "-i"]


class Terminal:
    """``argv`` (an interactive bash by default) leading a session on a new pseudo-terminal."""

    def __init__(self, argv: Sequence[str] = BASH, *, prefix: Sequence[str] = ()) -> None:
        self.master, slave = pty.openpty()
        self.shell = subprocess.Popen(
            [*prefix, "setsid", "--ctty", *argv],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env={
                "PATH": os.environ["PATH"],
                "TERM": "dumb",
                "PS1": "$ ",
                **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"},
            },
        )
        os.close(slave)
        self.output = ""

    def type(self, keys: str) -> None:
        """Type ``keys`` on the terminal."""
        os.write(self.master, keys.encode())

    def expect(self, text: str) -> None:
        """Wait until the terminal has shown ``text`` (since the last expect)."""
        deadline = time.monotonic() + TIMEOUT
        while text not in self.output:
            remaining = deadline - time.monotonic()
            readable, _, _ = select.select([self.master], [], [], max(0.0, remaining))
            if not readable:
                raise AssertionError(f"terminal never showed {text!r}; it showed {self.output!r}")
            self.output += os.read(self.master, 4096).decode(errors="replace")
        self.output = self.output.split(text, 1)[1]

    def session(self) -> list[int]:
        """The pids of every process still in the terminal's session (the session leader's)."""
        members = []
        for entry in filter(str.isdigit, os.listdir("/proc")):
            with contextlib.suppress(OSError):
                if os.getsid(int(entry)) == self.shell.pid:
                    members.append(int(entry))
        return members

    def close(self) -> None:
        """End the shell, anything left in its session (a stuck job), and the terminal."""
        for pid in self.session():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if self.shell.poll() is None:
            self.shell.kill()
        self.shell.wait()
        os.close(self.master)


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    """An interactive bash with job control, on a pseudo-terminal."""
    if shutil.which("bash") is None or shutil.which("setsid") is None:
        pytest.skip("needs bash and setsid (util-linux) for an interactive shell")
    term = Terminal()
    try:
        yield term
    finally:
        term.close()


def test_ctrl_z_stops_the_job_and_fg_resumes_the_command(terminal: Terminal) -> None:
    """Ctrl-Z stops CMD and the supervisor (the shell reports the job stopped); fg resumes both.

    CMD (``cat``) reads and writes the terminal, which shows the terminal is handed to CMD's
    process group at start and again on ``fg``. (A read racing the first hand-over, answered by
    SIGCONT in the supervisor, is too rare to provoke here.)
    """
    terminal.expect("$ ")
    terminal.type(f"{PYTHON} {HARNESS} -- cat\n")
    terminal.expect("info: started ['cat']")
    terminal.type("first-line\n")
    # The terminal's echo, then cat's copy (a log line may come between them).
    terminal.expect("first-line\r\n")
    terminal.expect("first-line\r\n")
    terminal.type("\x1a")  # Ctrl-Z
    terminal.expect("Stopped")
    terminal.expect("$ ")
    terminal.type("fg\n")
    terminal.expect("the command was continued")
    terminal.type("after-fg\n")
    terminal.expect("after-fg\r\n")
    terminal.expect("after-fg\r\n")
    terminal.type("\x04")  # Ctrl-D: end of input, cat exits 0
    terminal.type("echo status=$?\n")
    terminal.expect("status=0")


def test_stty_tostop_does_not_livelock_the_wrapper(terminal: Terminal) -> None:
    """Under ``stty tostop`` the wrapper, in the background once CMD holds the terminal, still logs.

    Its writes go through (SIGTTOU is blocked in the log writer, as tini ignores it) instead of
    SIGTTOU -> retry at 100% CPU; CMD reads a line and exits 3, and the shell gets that status.
    """
    terminal.expect("$ ")
    terminal.type("stty tostop\n")
    terminal.expect("$ ")
    terminal.type(f"{PYTHON} {HARNESS} -- sh -c 'read line; exit 3'\n")
    terminal.expect("info: started ['sh'")
    terminal.type("go\n")
    terminal.expect("the command exited with status 3")
    terminal.type("echo status=$?\n")
    terminal.expect("status=3")


def _stop_then_terminate(terminal: Terminal, wrapper: int) -> None:
    """Ctrl-Z, wait until CMD is stopped, then SIGTERM the wrapper."""
    terminal.type("\x1a")  # Ctrl-Z: SIGTSTP to the terminal's foreground group, CMD's
    terminal.expect("the command was stopped by SIGTSTP")
    os.kill(wrapper, signal.SIGTERM)


def test_ctrl_z_in_a_session_the_wrapper_leads_never_stops_it() -> None:
    """No job-control shell above (``ssh -t host run -- CMD``, ``script``): Ctrl-Z then SIGTERM.

    The wrapper does not stop itself (nothing would resume it); SIGTERM reaches the stopped CMD
    with a SIGCONT, and the wrapper exits 143.
    """
    term = Terminal([PYTHON, str(HARNESS), "--", "sleep", "600"])
    try:
        term.expect("info: started ['sleep'")
        _stop_then_terminate(term, term.shell.pid)
        assert term.shell.wait(TIMEOUT) == 128 + signal.SIGTERM
    finally:
        term.close()


def test_ctrl_z_under_tini_with_a_terminal_never_stops_the_wrapper() -> None:
    """``docker run --init -it``: tini is PID 1 with the terminal; Ctrl-Z then SIGTERM to tini.

    tini does no job control, so the wrapper must not stop itself: it warns, and tini's forwarded
    SIGTERM ends CMD (tini exits 143).
    """
    skip_unless_pid1()
    tini = shutil.which("tini")
    if tini is None:
        pytest.skip("needs tini (scripts/test installs it with apt)")
    as_pid1 = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]
    term = Terminal([tini, "--", PYTHON, str(HARNESS), "--", "sleep", "600"], prefix=as_pid1)
    try:
        term.expect("info: started ['sleep'")
        children = Path(f"/proc/{term.shell.pid}/task/{term.shell.pid}/children")
        wait_until(lambda: bool(children.read_text().split()), "tini starting")
        tini_pid = int(children.read_text().split()[0])
        _stop_then_terminate(term, tini_pid)
        assert term.shell.wait(TIMEOUT) == 128 + signal.SIGTERM
    finally:
        term.close()

"""Run by hand from a job-control shell, the supervisor keeps Ctrl-Z, ``fg`` and the terminal working."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.supervisor.supervised import HARNESS, PYTHON, TIMEOUT


class Terminal:
    """An interactive bash on a new pseudo-terminal (its controlling terminal), driven by keys."""

    def __init__(self) -> None:
        self.master, slave = os.openpty()
        self.shell = subprocess.Popen(
            ["setsid", "--ctty", "bash", "--norc", "--noprofile", "-i"],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env={"PATH": os.environ["PATH"], "TERM": "dumb", "PS1": "$ "},
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

    def close(self) -> None:
        """End the shell and the terminal."""
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
    terminal.expect("first-line\r\nfirst-line\r\n")  # the terminal's echo, then cat's copy
    terminal.type("\x1a")  # Ctrl-Z
    terminal.expect("Stopped")
    terminal.expect("$ ")
    terminal.type("fg\n")
    terminal.expect("the command was continued")
    terminal.type("after-fg\n")
    terminal.expect("after-fg\r\nafter-fg\r\n")
    terminal.type("\x04")  # Ctrl-D: end of input, cat exits 0
    terminal.type("echo status=$?\n")
    terminal.expect("status=0")

"""Run the real entrypoint (or a harness, for supervisor-only hooks) as PID 1 or not, for tests.

A reader thread collects the child's stdout lines so tests can wait for a line with a generous
timeout; ``send`` signals the supervisor itself (for PID 1, its pid as seen from outside).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
HARNESS = HERE / "harness.py"
PYTHON = sys.executable
TIMEOUT = 20.0  # generous: waiting for something to happen, never a measured duration


@functools.cache
def pid1_skip_reason() -> str | None:
    """Why PID 1 tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root for unshare --pid"
    if shutil.which("unshare") is None:
        return "needs unshare (util-linux)"
    probe = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        return f"unshare --pid --fork --mount-proc fails here: {probe.stderr.decode().strip()}"
    return None


def skip_unless_pid1() -> None:
    """Skip the calling test, with the reason, when a PID namespace cannot be made."""
    reason = pid1_skip_reason()
    if reason:
        pytest.skip(reason)


def child(script: str, *args: str) -> list[str]:
    """The command line running one of the helper child scripts in this directory."""
    return [PYTHON, str(HERE / script), *args]


# Flags only the harness has: hooks into the supervisor that the real command line does not expose.
HARNESS_ONLY_FLAGS = frozenset({"--request-stop-when", "--no-kill-group", "--crash-when"})


@functools.cache
def entrypoint_environment() -> dict[str, str]:
    """The environment for the real ``run``: entitled, against an emulator in this test process.

    The emulator lives as long as the test session (its thread is a daemon); re-registration is
    off so that only supervision happens once CMD runs.
    """
    from marketplace_entitlement.emulator import Emulator  # noqa: PLC0415

    emulator = Emulator(rate_limits={"RegisterUsage": None}).start()
    atexit.register(emulator.stop)  # removes its key directory when the test session ends
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "MARKETPLACE_"))
    }
    environment.update(
        AWS_ENDPOINT_URL_MARKETPLACE_METERING=emulator.endpoint,
        AWS_ACCESS_KEY_ID="AKIDSUPERVISION",
        AWS_SECRET_ACCESS_KEY="secret",
        AWS_REGION="us-east-1",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
        MARKETPLACE_PRODUCT_CODE="prod-supervision",
        MARKETPLACE_PUBLIC_KEY_FILE=str(emulator.public_key_file),
        MARKETPLACE_REREGISTER_INTERVAL="0",
        MARKETPLACE_LOG_FORMAT="text",
        MARKETPLACE_LOG_LEVEL="debug",
    )
    return environment


def entrypoint_argv(flags: Sequence[str]) -> list[str]:
    """``marketplace-entitlement run`` with the harness's flags translated to its options."""
    options: list[str] = []
    rewrites: list[str] = []
    remaining = list(flags)
    while remaining:
        flag = remaining.pop(0)
        if flag == "--signal-group":
            options += ["--signal-group", "true"]
        elif flag in ("--term-delay", "--stop-grace-period", "--leftover-grace-period"):
            options += [flag, remaining.pop(0)]
        elif flag == "--rewrite":
            rewrites.append(remaining.pop(0))
        else:
            raise ValueError(f"no entrypoint option for harness flag {flag}")
    if rewrites:
        options += ["--signal-rewrite", ",".join(rewrites)]
    return [PYTHON, "-m", "marketplace_entitlement", "run", *options]


class Supervised:
    """``command`` supervised as PID 1 (``pid1=True``) or as a plain child.

    The supervisor is the real ``marketplace-entitlement run`` (which first passes the entitlement
    gate against an emulator), unless a flag only the harness has is used. ``env`` replaces the
    real entrypoint's environment; ``options`` are more ``run`` options; ``wrap`` goes between
    ``unshare`` and the supervisor (``setpriv ...``); ``stderr`` (a file descriptor) replaces the
    stderr pipe that :attr:`stderr` reads.
    """

    def __init__(
        self,
        command: Sequence[str],
        *flags: str,
        pid1: bool = True,
        env: dict[str, str] | None = None,
        options: Sequence[str] = (),
        wrap: Sequence[str] = (),
        stderr: int | None = None,
    ) -> None:
        if pid1:
            skip_unless_pid1()
        prefix = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"] if pid1 else []
        self.pid1 = pid1
        self.real_entrypoint = not HARNESS_ONLY_FLAGS.intersection(flags)
        if self.real_entrypoint:
            program = [*entrypoint_argv(flags), *options]
            environment = entrypoint_environment() if env is None else env
        else:
            program, environment = [PYTHON, str(HARNESS), *flags], dict(os.environ)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self.process = subprocess.Popen(
            [*prefix, *wrap, *program, "--", *command],
            stdin=subprocess.PIPE,  # the echo children run until it closes
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if stderr is None else stderr,
            text=True,
            env=environment,
        )
        self._stderr_lines: list[str] = []
        self._stderr_reader = threading.Thread(target=self._read_stderr, daemon=True)
        if stderr is None:
            self._stderr_reader.start()
        threading.Thread(target=self._read_stdout, daemon=True).start()
        self._supervisor_pid: int | None = None

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._stderr_lines.append(line)

    @property
    def stderr(self) -> str:
        """What the supervisor (and the children) wrote to stderr so far."""
        return "".join(self._stderr_lines)

    def expect_log(self, fragment: str, timeout: float = TIMEOUT) -> None:
        """Wait until a stderr line contains ``fragment`` (test code may poll)."""
        deadline = time.monotonic() + timeout
        while not any(fragment in line for line in list(self._stderr_lines)):
            if time.monotonic() > deadline:
                raise AssertionError(f"no log line with {fragment!r}; stderr: {self.stderr}")
            time.sleep(0.01)

    def expect(self, wanted: str, timeout: float = TIMEOUT) -> list[str]:
        """Wait for the stdout line ``wanted``; return the lines read up to and including it."""
        deadline = time.monotonic() + timeout
        read: list[str] = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line {wanted!r} within {timeout} s; saw {self.seen}")
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self.lines.put(None)
                raise AssertionError(f"stdout closed before {wanted!r}; saw {self.seen}")
            self.seen.append(line)
            read.append(line)
            if line == wanted:
                return read

    def expect_all(self, *wanted: str, timeout: float = TIMEOUT) -> None:
        """Wait until every line in ``wanted`` has been seen, in any order."""
        deadline = time.monotonic() + timeout
        while missing := [line for line in wanted if line not in self.seen]:
            self.expect(missing[0], timeout=max(0.0, deadline - time.monotonic()))

    def supervisor_pid(self) -> int:
        """The harness's pid as this process sees it (the child of unshare when PID 1)."""
        if not self.pid1:
            return self.process.pid
        if self._supervisor_pid is None:
            deadline = time.monotonic() + TIMEOUT
            while self._supervisor_pid is None and time.monotonic() < deadline:
                self._supervisor_pid = _child_of(self.process.pid)
                time.sleep(0.01)
            assert self._supervisor_pid is not None, "unshare's child never appeared"
        return self._supervisor_pid

    def send(self, signum: int) -> None:
        """Send ``signum`` to the supervisor."""
        os.kill(self.supervisor_pid(), signum)

    def close_stdin(self) -> None:
        """Close the children's stdin (the echo children exit at end of input)."""
        if self.process.stdin is not None:
            self.process.stdin.close()

    def wait(self, timeout: float = TIMEOUT) -> int:
        """Wait for the supervisor to exit; return its exit status."""
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        if self._stderr_reader.is_alive():
            self._stderr_reader.join(timeout)
        return code

    def rest_of_stdout(self) -> list[str]:
        """Every stdout line not yet read by expect(), once the process has exited."""
        rest: list[str] = []
        try:
            while (line := self.lines.get(timeout=TIMEOUT)) is not None:
                rest.append(line)
        except queue.Empty:
            raise AssertionError(f"stdout still open {TIMEOUT} s after exit: {rest}") from None
        self.lines.put(None)
        self.seen.extend(rest)
        return rest

    def __enter__(self) -> Supervised:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            # As PID 1 the harness is unshare's child: SIGKILL it (ending its namespace) first.
            if self.pid1 and self._supervisor_pid is None:
                self._supervisor_pid = _child_of(self.process.pid)
            if self.pid1 and self._supervisor_pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self._supervisor_pid, signal.SIGKILL)
            self.process.kill()
            self.process.wait()
        self.close_stdin()
        if self.process.stdout is not None:
            self.process.stdout.close()
        if self.process.stderr is not None and not self._stderr_reader.is_alive():
            self.process.stderr.close()


def _child_of(parent: int) -> int | None:
    """The pid of a process whose parent is ``parent``, from /proc (None if there is none yet)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            return int(entry)
    return None


def wait_until(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    """Poll ``condition`` (test code may poll) until it holds; fail naming ``what`` after timeout."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(0.01)


def run(command: Sequence[str], *flags: str, pid1: bool = True) -> tuple[int, str, str]:
    """Supervise ``command`` to the end; return (exit status, stdout, stderr)."""
    with Supervised(command, *flags, pid1=pid1) as supervised:
        code = supervised.wait()
        stdout = "\n".join(supervised.rest_of_stdout())
        return code, stdout, supervised.stderr


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


__all__ = [
    "PYTHON",
    "Supervised",
    "alive",
    "child",
    "entrypoint_environment",
    "run",
    "skip_unless_pid1",
    "wait_until",
]

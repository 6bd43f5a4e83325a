"""Turn signals into bytes on a self-pipe, so one loop in the main thread does the work.

Python runs signal handlers only in the main thread, between bytecodes. Rather than doing anything
inside them, :class:`SignalPipe` installs a handler that does nothing for every catchable signal and
points :func:`signal.set_wakeup_fd` at a non-blocking pipe: the interpreter's C-level handler then
writes each signal's number into the pipe, and :meth:`SignalPipe.wait` blocks in ``select`` on it.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Final, TypeAlias

from marketplace_entitlement.supervision._signal_sets import FORWARDED, UNCATCHABLE

__all__ = [
    "UNCATCHABLE",
    "SignalPipe",
    "catchable_signals",
    "handled_signals",
    "signal_from_name",
    "signal_name",
]

_Handler: TypeAlias = "Callable[[int, FrameType | None], object] | int | signal.Handlers | None"

# A 0 byte in the pipe is a notify(): no signal has number 0.
_NOTIFY: Final = b"\0"
_READ_SIZE: Final = 4096


# Linux signals that ``signal.Signals`` lacks on some Pythons (SIGSTKFLT was added in 3.11).
_NAMES_MISSING_FROM_SIGNALS: Final = {16: "STKFLT"} if sys.platform == "linux" else {}


def catchable_signals() -> list[int]:
    """Every signal number this platform lets a process handle, in ascending order."""
    return sorted(int(s) for s in signal.valid_signals() if s not in UNCATCHABLE)


def handled_signals() -> list[int]:
    """The signals :class:`SignalPipe` catches: all catchable ones but faults and SIGPIPE."""
    return sorted(int(s) for s in FORWARDED)


def _record(signum: int, frame: FrameType | None) -> None:
    """Do nothing: the interpreter has already written ``signum`` to the wakeup fd."""


class SignalPipe:
    """Installs a handler that only records it for every signal the wrapper forwards.

    Fault signals and SIGPIPE are left alone (see ``_signal_sets``). Once the handlers exist, the
    signals are unblocked: any that arrived while the console script's boot had them blocked are
    delivered then, so nothing sent during startup is lost.

    Recording is :func:`signal.set_wakeup_fd` on a non-blocking self-pipe; the handlers themselves
    do nothing, so one loop in the main thread does the work. Use it as a context manager, entered
    from the main thread; :meth:`notify` may be called from any thread.
    """

    def __init__(self) -> None:
        self._read_fd = -1
        self._write_fd = -1
        self._previous_handlers: dict[int, _Handler] = {}
        self._previous_wakeup_fd = -1
        self._close_lock = threading.Lock()  # notify() never writes to a closed, reused fd

    def __enter__(self) -> SignalPipe:
        if self._read_fd != -1:
            raise RuntimeError("SignalPipe is already installed")
        self._read_fd, self._write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            # Raises ValueError outside the main thread, before any handler is touched.
            self._previous_wakeup_fd = signal.set_wakeup_fd(
                self._write_fd, warn_on_full_buffer=False
            )
            for signum in handled_signals():
                self._previous_handlers[signum] = signal.getsignal(signum)
                signal.signal(signum, _record)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, handled_signals())
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous_handlers.items():
            # getsignal() answers None for handlers installed outside Python; leave those be.
            if handler is not None:
                signal.signal(signum, handler)
        self._previous_handlers.clear()
        if self._write_fd != -1:
            # ValueError: not the main thread, so __enter__ failed before installing anything.
            with contextlib.suppress(ValueError):
                signal.set_wakeup_fd(self._previous_wakeup_fd)
            with self._close_lock:
                os.close(self._read_fd)
                os.close(self._write_fd)
                self._read_fd = self._write_fd = -1

    def wait(self, timeout: float | None = None) -> list[int]:
        """Block until a signal arrives, :meth:`notify` is called, or ``timeout`` seconds pass.

        Blocks in ``select`` on the pipe (``None`` waits forever, with no polling). Returns the
        signal numbers received since the last call, in order; empty after a notify or a timeout.
        """
        if self._read_fd == -1:
            raise RuntimeError("SignalPipe is not installed; use it as a context manager")
        readable, _, _ = select.select([self._read_fd], [], [], timeout)
        if not readable:
            return []
        received = bytearray()
        while True:
            try:
                chunk = os.read(self._read_fd, _READ_SIZE)
            except BlockingIOError:
                break
            received += chunk
            if len(chunk) < _READ_SIZE:
                break
        return [byte for byte in received if byte != 0]

    def notify(self) -> None:
        """Wake :meth:`wait` from any thread (writes a 0 byte to the pipe)."""
        with self._close_lock:
            if self._write_fd == -1:
                return
            # BlockingIOError: the pipe is full, so wait() has a wake-up pending already.
            with contextlib.suppress(BlockingIOError):
                os.write(self._write_fd, _NOTIFY)


_RT_OFFSET = re.compile(r"^RT(MIN|MAX)([+-]\d+)?$")


def signal_from_name(value: str) -> int:
    """Parse a signal given as ``TERM``, ``SIGTERM``, ``sigterm``, ``15`` or ``RTMIN+2``.

    Raises:
        ValueError: ``value`` names no signal this platform has.
    """
    text = value.strip().upper()
    name = text.removeprefix("SIG")
    if name.isdigit():
        signum = int(name)
    elif name in _NAMES_MISSING_FROM_SIGNALS.values():
        signum = next(n for n, known in _NAMES_MISSING_FROM_SIGNALS.items() if known == name)
    else:
        match = _RT_OFFSET.match(name)
        if match:
            base = signal.SIGRTMIN if match.group(1) == "MIN" else signal.SIGRTMAX
            signum = int(base) + int(match.group(2) or 0)
        else:
            try:
                signum = int(signal.Signals["SIG" + name])
            except KeyError:
                raise ValueError(f"unknown signal {value!r}") from None
    if signum not in signal.valid_signals():
        raise ValueError(f"unknown signal {value!r}")
    return signum


def signal_name(signum: int) -> str:
    """Name a signal number: ``SIGTERM`` for 15, ``SIGRTMIN+2`` for a real-time signal.

    Raises:
        ValueError: ``signum`` is not a signal this platform has.
    """
    if signum not in signal.valid_signals():
        raise ValueError(f"no signal number {signum}")
    rtmin, rtmax = int(signal.SIGRTMIN), int(signal.SIGRTMAX)
    if rtmin < signum < rtmax:
        return f"SIGRTMIN+{signum - rtmin}"
    try:
        return signal.Signals(signum).name
    except ValueError:  # a valid number the enum lacks (SIGSTKFLT before Python 3.11)
        return "SIG" + _NAMES_MISSING_FROM_SIGNALS.get(signum, str(signum))

"""Log output for the command line: one JSON object per line, or plain text, on stderr.

Only the CLI calls ``configure_logging``; importing the package configures nothing.

Supervision must never wait on logging: records are formatted by the thread that logs them and
queued to one writer thread that alone writes to file descriptor 2 (see :class:`StderrHandler`).
A full queue drops new lines and counts them; a broken or closed stderr drops every line. Neither
ever changes what ``run`` does or the status it exits with.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import re
import select
import signal
import threading
import time
from datetime import datetime, timezone
from typing import Any, Final, TextIO

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is a field.
_STANDARD_ATTRIBUTES = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys() | {"message", "asctime"}
)
PACKAGE_LOGGER = "marketplace_entitlement"
_HANDLER_NAME = "marketplace-entitlement-cli"


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: time, level, logger, message, then the extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as a single line of JSON."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=timezone.utc)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(
            (key, value)
            for key, value in record.__dict__.items()
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_")
        )
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """``marketplace-entitlement: level: message`` for people reading a terminal.

    Control characters in the message (a newline in a service's error message, an escape
    sequence in a token) are escaped, so one event is one line and no text can forge another.
    """

    # C0 and C1 controls, DEL, and the Unicode line/paragraph separators and bidi overrides.
    UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")

    @classmethod
    def escape(cls, text: str) -> str:
        r"""``text`` with each control character written as Python writes it (``\n``, ``\x1b``)."""
        return cls.UNPRINTABLE.sub(lambda m: ascii(m.group())[1:-1], text)

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as one line of text."""
        message = self.escape(record.getMessage())
        line = f"marketplace-entitlement: {record.levelname.lower()}: {message}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


# Lines waiting for the writer; beyond this, new lines are dropped (and counted).
QUEUE_LINES: Final = 1024
# At exit, how long to let the writer drain what is queued (a stuck stderr costs at most this).
EXIT_FLUSH_SECONDS: Final = 1.0
_STDERR_FD: Final = 2


class StderrHandler(logging.Handler):
    """Queue formatted lines for a writer thread that writes them to file descriptor 2.

    ``emit`` never blocks and never raises: when :data:`QUEUE_LINES` lines are waiting (stderr's
    reader is slow, or its pipe is full), the new line is dropped and counted, and the writer
    reports the count in one line once it can write again. When stderr is broken (EPIPE: its reader
    is gone) or closed (EBADF), every line from then on is dropped. The writer thread blocks every
    signal: they are the main thread's to handle, and with SIGTTOU blocked a write to a terminal
    under ``stty tostop`` goes through instead of stopping the wrapper (or looping on SIGTTOU).
    """

    def __init__(self, fd: int = _STDERR_FD, capacity: int = QUEUE_LINES) -> None:
        super().__init__()
        self._fd = fd
        self._capacity = capacity
        self._lines: collections.deque[bytes] = collections.deque()
        self._ready = threading.Condition(threading.Lock())
        self._dropped = 0
        self._broken = False
        self._writing = False
        self._writer: threading.Thread | None = None

    @property
    def dropped(self) -> int:
        """How many lines were dropped so far (a full queue, or a broken stderr)."""
        return self._dropped

    def emit(self, record: logging.LogRecord) -> None:
        """Format ``record`` and queue it; drop it (counted) when the queue is full."""
        try:
            line = (self.format(record) + "\n").encode("utf-8", "backslashreplace")
        except Exception:  # noqa: BLE001  (logging's contract: a bad record must not raise)
            self.handleError(record)
            return
        with self._ready:
            if self._broken or len(self._lines) >= self._capacity:
                self._dropped += 1
                return
            self._lines.append(line)
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_forever, name="marketplace-log-writer", daemon=True
                )
                self._writer.start()
            self._ready.notify_all()  # the writer, and not only a flush() waiting

    def flush(self, timeout: float = EXIT_FLUSH_SECONDS) -> None:
        """Wait until the queued lines are written, for at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._ready:
            while (self._lines or self._writing) and not self._broken:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._writer is None:
                    return
                self._ready.wait(remaining)

    def _write_forever(self) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        while True:
            with self._ready:
                while not self._lines:
                    self._ready.notify_all()  # flush() waiters: everything is written
                    self._ready.wait()
                batch = b"".join(self._lines)
                self._lines.clear()
                dropped, self._dropped = self._dropped, 0
                self._writing = True
            if dropped:
                batch = self._dropped_line(dropped) + batch
            broken = not self._write_all(batch)
            with self._ready:
                self._writing = False
                if broken:
                    self._broken = True
                    self._dropped += len(self._lines)
                    self._lines.clear()
                    self._ready.notify_all()
                    return

    def _dropped_line(self, count: int) -> bytes:
        record = logging.LogRecord(
            PACKAGE_LOGGER, logging.WARNING, __file__, 0,
            "%d log lines were dropped: stderr did not keep up", (count,), None,
        )  # fmt: skip
        record.event = "log.dropped"
        record.dropped = count
        return (self.format(record) + "\n").encode("utf-8", "backslashreplace")

    def _write_all(self, data: bytes) -> bool:
        """Write ``data`` to the fd; False when it is broken or closed (nothing more can go)."""
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._fd, view)
            except BlockingIOError:
                # Someone set O_NONBLOCK on the shared file description (CMD can): wait for room.
                select.select([], [self._fd], [], EXIT_FLUSH_SECONDS)
                continue
            except InterruptedError:
                continue
            except OSError:  # EPIPE (reader gone), EBADF (closed), EIO, ENOSPC: stop writing
                return False
            view = view[written:]
        return True


def configure_logging(log_format: str, level: str, stream: TextIO | None = None) -> None:
    """Send the package's log events to ``stream`` as ``log_format``.

    With no ``stream``, lines go to file descriptor 2 through a :class:`StderrHandler` (never
    blocking the caller); a given ``stream`` is written synchronously (for tests and embedding).
    """
    package = logging.getLogger(PACKAGE_LOGGER)
    for old in list(package.handlers):
        if old.get_name() == _HANDLER_NAME:
            package.removeHandler(old)
    handler: logging.Handler = StderrHandler() if stream is None else logging.StreamHandler(stream)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    package.addHandler(handler)
    package.setLevel(level.upper())
    package.propagate = False

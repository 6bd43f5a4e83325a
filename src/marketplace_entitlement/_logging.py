"""Log output for the command line: one JSON object per line, or plain text, on stderr.

Only the CLI calls ``configure_logging``; importing the package configures nothing.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import datetime, timezone
from typing import Any, TextIO

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


def configure_logging(log_format: str, level: str, stream: TextIO | None = None) -> None:
    """Send the package's log events to ``stream`` (default stderr) as ``log_format``."""
    package = logging.getLogger(PACKAGE_LOGGER)
    for handler in list(package.handlers):
        if handler.get_name() == _HANDLER_NAME:
            package.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    package.addHandler(handler)
    package.setLevel(level.upper())
    package.propagate = False

"""The status file: the current entitlement state, written atomically, and the probe that reads it.

Written after every registration when ``MARKETPLACE_STATUS_FILE`` is set; ``marketplace-entitlement
probe`` exits 0 only while the last successful registration is recent enough (Kubernetes exec
probes, Docker ``HEALTHCHECK``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from marketplace_entitlement import _env, _exit_codes
from marketplace_entitlement._errors import ConfigurationError, EntitlementError
from marketplace_entitlement._logging import TextFormatter
from marketplace_entitlement._parsers import read_bounded_file

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
# The status file's mode, whatever the umask: readable by a probe running as another user, writable
# only by the entrypoint's user. It holds no secret (state, times, the last error's message).
STATUS_FILE_MODE = 0o644
MAX_STATUS_BYTES = 64 * 1024  # what the probe reads at most; the file is well under 1 KiB


@dataclass(frozen=True)
class ProbeResult:
    """Whether the probe passes, and the one line explaining why."""

    healthy: bool
    reason: str


class StatusFile:
    """Keeps the state of registrations and rewrites the file after each one (thread-safe)."""

    def __init__(self, path: Path, *, product_code: str, max_age: float | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._state: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            "product_code": product_code,
            "state": "starting",
            "entitled": False,
            "pid": os.getpid(),
            "max_age_s": max_age,
            "last_success": None,
            "last_attempt": None,
            "last_error": None,
            "next_attempt": None,
            "consecutive_failures": 0,
        }

    def create(self) -> StatusFile:
        """Write the ``starting`` state now, so an unusable path is refused before registering.

        Raises ConfigurationError naming MARKETPLACE_STATUS_FILE when the file cannot be written.
        """
        try:
            with self._lock:
                self._write()
        except OSError as error:
            raise ConfigurationError(
                f"{_env.STATUS_FILE}={str(self.path)!r} cannot be written: "
                f"{error.strerror or error}",
                variable=_env.STATUS_FILE,
                hint="point it at a writable directory (e.g. an emptyDir or /tmp)",
            ) from error
        return self

    def record_success(self, *, registered_at: float, next_attempt: float | None) -> None:
        """Record a successful, verified registration."""
        with self._lock:
            self._state.update(
                state="entitled",
                entitled=True,
                last_success=registered_at,
                last_attempt=registered_at,
                next_attempt=next_attempt,
                consecutive_failures=0,
            )
            self._write_or_log()

    def record_failure(
        self, error: EntitlementError, *, at: float, next_attempt: float | None
    ) -> None:
        """Record a failed registration; a verification or entitlement refusal ends ``entitled``.

        Other failures (throttling, network) keep the state: the probe then fails only once the
        last success is older than the maximum age.
        """
        with self._lock:
            refused = error.exit_code in (_exit_codes.VERIFICATION_FAILED, _exit_codes.NOT_ENTITLED)
            if refused:
                self._state.update(state="not_entitled", entitled=False)
            self._state.update(
                last_attempt=at,
                next_attempt=next_attempt,
                consecutive_failures=int(self._state["consecutive_failures"]) + 1,
                last_error={
                    "at": at,
                    "type": type(error).__name__,
                    "message": error.refusal_line(),
                    "exit_code": error.exit_code,
                    "aws_error_code": getattr(error, "aws_error_code", None),
                },
            )
            self._write_or_log()

    def record_metering(self, metering: dict[str, Any]) -> None:
        """Record custom metering's health (per dimension: last hour sent, backlog, oldest unsent)."""
        with self._lock:
            self._state["metering"] = metering
            self._write_or_log()

    def _write_or_log(self) -> None:
        """Write; a failure (disk full, volume gone) is logged, never fatal to the caller."""
        try:
            self._write()
        except OSError as error:
            logger.warning(
                "could not write the status file %s: %s",
                self.path,
                error,
                extra={"event": "status_file.write_failed"},
            )

    def _write(self) -> None:
        """Write a new file beside the target, through its descriptor, then rename it over.

        Safe in a shared directory (``/tmp``): the temporary file is created with ``O_EXCL`` and
        ``O_NOFOLLOW`` under a random name, relative to a descriptor of the directory; its mode is
        set with ``fchmod`` (``STATUS_FILE_MODE``, documented), never by path; and ``rename``
        replaces a symlink planted at the target instead of following it.
        """
        self._state["updated_at"] = time.time()
        payload = (json.dumps(self._state, indent=None, sort_keys=True) + "\n").encode()
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        directory_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            temporary = f".status-{secrets.token_hex(8)}.tmp"
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            descriptor = os.open(temporary, flags, 0o600, dir_fd=directory_fd)
            try:
                try:
                    os.fchmod(descriptor, STATUS_FILE_MODE)
                    view = memoryview(payload)
                    while view:
                        view = view[os.write(descriptor, view) :]
                    os.fsync(descriptor)
                finally:
                    os.close(descriptor)
                os.replace(
                    temporary, self.path.name, src_dir_fd=directory_fd, dst_dir_fd=directory_fd
                )
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temporary, dir_fd=directory_fd)
                raise
        finally:
            os.close(directory_fd)


def probe(path: Path, *, max_age: float | None = None, now: float | None = None) -> ProbeResult:
    """Pass only if the file says entitled and the last success is at most ``max_age`` seconds old.

    ``max_age`` defaults to the value the writer stored (derived from its settings). The reason is
    one line: control characters (from a service's message stored in the file) are escaped.
    """
    result = _probe(path, max_age=max_age, now=now)
    return ProbeResult(result.healthy, TextFormatter.escape(result.reason))


def _read_state(path: Path) -> dict[str, Any] | str:
    """The status file's JSON object, or why it cannot be had (bounded read, regular files only)."""
    if not path.exists():
        return f"no status file at {path}: the entrypoint has not registered yet"
    try:
        state = json.loads(read_bounded_file(str(path), _env.STATUS_FILE, MAX_STATUS_BYTES))
    except ConfigurationError as error:
        return f"status file {path} is unreadable: {error.message}"
    except (ValueError, RecursionError) as error:
        return f"status file {path} is unreadable: {error}"
    if not isinstance(state, dict):
        return f"status file {path} does not hold a JSON object"
    return state


def _probe(path: Path, *, max_age: float | None, now: float | None) -> ProbeResult:
    state = _read_state(path)
    if isinstance(state, str):
        return ProbeResult(False, state)
    current = time.time() if now is None else now
    limit = max_age if max_age is not None else state.get("max_age_s")
    last_success = state.get("last_success")
    if (
        not state.get("entitled")
        or not isinstance(last_success, (int, float))
        or not _finite(last_success)
    ):
        last_error = state.get("last_error")
        message = last_error.get("message") if isinstance(last_error, dict) else None
        return ProbeResult(
            False, f"not entitled ({state.get('state')}): {message or 'no successful registration'}"
        )
    age = current - float(last_success)
    if isinstance(limit, (int, float)) and _finite(limit) and age > float(limit):
        return ProbeResult(
            False, f"last successful registration was {age:.0f}s ago, more than {limit:.0f}s"
        )
    return ProbeResult(
        True, f"entitled; last successful registration {age:.0f}s ago" + _metering_line(state)
    )


def _metering_line(state: dict[str, Any]) -> str:
    """Custom metering's health in a few words (empty for hourly pricing)."""
    metering = state.get("metering")
    if not isinstance(metering, dict):
        return ""
    dimensions = metering.get("dimensions") or {}
    backlog = sum(int(d.get("backlog") or 0) for d in dimensions.values() if isinstance(d, dict))
    sent = [d.get("last_hour_sent") for d in dimensions.values() if isinstance(d, dict)]
    last = max((hour for hour in sent if hour), default=None)
    oldest = metering.get("oldest_unsent_hour")
    return f"; metering: last hour sent {last or 'none'}, unsent backlog {backlog}" + (
        f" since {oldest}" if oldest else ""
    )


def _finite(value: Any) -> bool:
    """A JSON number the probe can compute with (not a bool, NaN, infinity or a huge integer)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False

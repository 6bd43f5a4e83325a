"""The status file: the current entitlement state, written atomically, and the probe that reads it.

Written after every registration when ``MARKETPLACE_STATUS_FILE`` is set; ``marketplace-entitlement
probe`` exits 0 only while the last successful registration is recent enough (Kubernetes exec
probes, Docker ``HEALTHCHECK``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from marketplace_entitlement import _env, _exit_codes
from marketplace_entitlement._errors import ConfigurationError, EntitlementError

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1


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
        """Write to a temporary file in the same directory, fsync, then rename over the target."""
        self._state["updated_at"] = time.time()
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=".status-", dir=directory)
        try:
            with os.fdopen(descriptor, "w") as handle:
                json.dump(self._state, handle, indent=None, sort_keys=True)
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temporary, 0o644)  # readable by a probe running as another user
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise


def probe(path: Path, *, max_age: float | None = None, now: float | None = None) -> ProbeResult:
    """Pass only if the file says entitled and the last success is at most ``max_age`` seconds old.

    ``max_age`` defaults to the value the writer stored (derived from its settings).
    """
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        return ProbeResult(
            False, f"no status file at {path}: the entrypoint has not registered yet"
        )
    except (OSError, ValueError) as error:
        return ProbeResult(False, f"status file {path} is unreadable: {error}")
    if not isinstance(state, dict):
        return ProbeResult(False, f"status file {path} does not hold a JSON object")
    current = time.time() if now is None else now
    limit = max_age if max_age is not None else state.get("max_age_s")
    last_success = state.get("last_success")
    if not state.get("entitled") or not isinstance(last_success, (int, float)):
        last_error = (state.get("last_error") or {}).get("message", "no successful registration")
        return ProbeResult(False, f"not entitled ({state.get('state')}): {last_error}")
    age = current - float(last_success)
    if isinstance(limit, (int, float)) and age > float(limit):
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

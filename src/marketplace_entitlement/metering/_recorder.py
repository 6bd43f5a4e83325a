"""``record_usage``: durable on return, from any thread and any process of the container.

Each call is one SQLite transaction in the store under ``MARKETPLACE_METERING_STATE_DIR`` (the
directory ``run`` uses and passes to CMD), so usage survives ``kill -9`` of every process once the
call returns, and gunicorn-style workers (forked or not) can all record at once.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from marketplace_entitlement import _env
from marketplace_entitlement._errors import ConfigurationError
from marketplace_entitlement.metering._records import RecordChecker
from marketplace_entitlement.store import Usage, UsageStore, open_store, sqlite_url

STORE_FILE = "usage.sqlite3"


def open_metering_store(state_dir: Path) -> UsageStore:
    """Open (creating it if needed) the usage store in ``state_dir``; refuse an unusable one."""
    try:
        return open_store(
            sqlite_url(str(Path(state_dir) / STORE_FILE)), variable=_env.METERING_STATE_DIR
        )
    except (OSError, _sqlite_error()) as error:
        raise ConfigurationError(
            f"{_env.METERING_STATE_DIR}={str(state_dir)!r} cannot hold the usage store: {error}",
            variable=_env.METERING_STATE_DIR,
            hint="point it at a writable, task- or pod-scoped volume (ECS task volume, emptyDir)",
        ) from error


def _sqlite_error() -> type[Exception]:
    import sqlite3  # noqa: PLC0415 (the store's backend; imported with it)

    return sqlite3.Error


class Recorder:
    """Checks records and adds them to a store (thread-safe: the store serialises writes)."""

    def __init__(
        self,
        store: UsageStore,
        dimensions: Iterable[str],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.checker = RecordChecker(dimensions)
        self._clock = clock

    def record(
        self, dimension: str, quantity: int = 1, *, tags: Mapping[str, str] | None = None
    ) -> None:
        """Record one usage; durable when it returns; UsageRecordError for a bad record."""
        self.store.add((self.checker.usage(dimension, quantity, tags, self._clock()),))

    def add(self, usage: Iterable[Usage]) -> None:
        """Add checked items in one transaction (all or nothing)."""
        self.store.add(usage)


_lock = threading.Lock()
_default: tuple[tuple[str | None, str | None], Recorder] | None = None


def set_default_recorder(recorder: Recorder | None) -> None:
    """Make ``record_usage`` use ``recorder`` in this process (``start_metering`` does)."""
    global _default
    with _lock:
        _default = None if recorder is None else ((None, None), recorder)


def recorder_for(
    state_dir: str | None,
    dimensions: str | None,
    environ: Mapping[str, str],
    *,
    command_line: bool = False,
) -> Recorder:
    """A recorder on the store of ``state_dir`` for ``dimensions``, each else from ``environ``.

    Without declared dimensions, the image's pinned ones are used (docs/security.md, "Pinning").
    Used by ``record_usage`` (nothing explicit) and the ``record`` command (its options).
    """
    from marketplace_entitlement._settings import resolve_option  # noqa: PLC0415 (import cycle)

    directory = resolve_option("metering_state_dir", state_dir, environ, command_line=command_line)
    declared = resolve_option("dimensions", dimensions, environ, command_line=command_line)
    if not declared:
        from marketplace_entitlement.entitlement._pin import (  # noqa: PLC0415 (import cycle)
            pinned_dimensions,
        )

        declared = pinned_dimensions()
    if directory is None:
        raise ConfigurationError(
            f"{_env.METERING_STATE_DIR} is not set: there is no usage store to record into",
            variable=_env.METERING_STATE_DIR,
            hint="run under `marketplace-entitlement run` with MARKETPLACE_PRICING=custom "
            "(it passes the directory on), or set it to the directory `run` uses",
        )
    if not declared:
        raise ConfigurationError(
            f"{_env.DIMENSIONS} is not set: no dimension may be recorded",
            variable=_env.DIMENSIONS,
        )
    return Recorder(open_metering_store(directory), declared)


def _recorder_from_environment() -> Recorder:
    global _default
    key = (os.environ.get(_env.METERING_STATE_DIR), os.environ.get(_env.DIMENSIONS))
    current = _default
    if current is not None and (current[0] == key or current[0] == (None, None)):
        return current[1]
    with _lock:
        if _default is not None and (_default[0] == key or _default[0] == (None, None)):
            return _default[1]
        recorder = recorder_for(None, None, os.environ)
        _default = (key, recorder)
        return recorder


def record_usage(
    dimension: str, quantity: int = 1, *, tags: Mapping[str, Any] | None = None
) -> None:
    """Record ``quantity`` units of ``dimension`` (tags become MeterUsage allocations).

    Durable when it returns: the usage survives ``kill -9`` of every process in the container and
    is sent with MeterUsage after its hour closes. Thread-safe and safe from several processes.
    Raises ``UsageRecordError`` (nothing recorded) for an undeclared dimension, a quantity that is
    not a whole number 0..2147483647, or tags the service would refuse; ``ConfigurationError`` when
    no store is configured.
    """
    _recorder_from_environment().record(dimension, quantity, tags=tags)

"""The SQLite backend of the usage store: one file, WAL, safe for several processes of one container.

Durability: the database runs in WAL mode with ``synchronous=NORMAL``. A transaction is in the WAL
file (in the operating system's page cache) when ``commit`` returns, so it survives ``kill -9`` of
every process in the container; it is not fsynced on every commit, so a power loss or kernel crash
of the host may lose the last transactions before the next checkpoint (the database itself stays
consistent). That is the trade that lets ``add`` run tens of thousands of times per second; a
container's tasks and pods do not outlive their host anyway.

Concurrency: every write is one ``BEGIN IMMEDIATE`` transaction (the write lock is taken first, so
two writers never deadlock upgrading a read lock), and a busy timeout makes a writer wait for
another process's transaction instead of failing. One ``SqliteStore`` is safe from several threads
(one connection behind a lock) and across ``fork`` (a child reopens its own connection, as gunicorn
workers forked after the app imported the package must).

Quantities are ``Decimal`` kept as canonical text, and summed exactly in SQL by a ``dec_add``
function each connection registers, so that ``add`` is a single upsert per item.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from marketplace_entitlement.store._base import (
    BacklogEntry,
    FrozenRecord,
    PayloadBuilder,
    RecordState,
    Usage,
)
from marketplace_entitlement.store._common import (
    COLUMNS,
    UsageRow,
    allocations_text,
    backlog_order,
    carried_rows,
    check_finish,
    freeze_groups,
    group_usage,
    pending_entry,
    record,
    text,
)

BUSY_TIMEOUT_SECONDS = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    stream TEXT NOT NULL,
    hour INTEGER NOT NULL,
    tags TEXT NOT NULL,
    quantity TEXT NOT NULL,
    PRIMARY KEY (stream, hour, tags)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    stream TEXT NOT NULL,
    hour INTEGER NOT NULL,
    payload TEXT,
    allocations TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    detail TEXT,
    owner TEXT,
    lease_until REAL,
    UNIQUE (stream, hour)
);
CREATE INDEX IF NOT EXISTS records_by_state ON records (state, hour);
"""


def _dec_add(left: str | None, right: str) -> str:
    """Exact sum of two canonical decimal texts (registered as the SQL function ``dec_add``)."""
    if left is None:
        return right
    return text(Decimal(left) + Decimal(right))


def _as_text(rows: Sequence[UsageRow]) -> list[tuple[str, int, str, str]]:
    """Usage rows with their quantities as the canonical text this backend stores."""
    return [(stream, hour, tags, text(q)) for stream, hour, tags, q in rows]


_open_stores: weakref.WeakSet[SqliteStore] = weakref.WeakSet()
_fork_hook: list[bool] = []


def _after_fork_in_child() -> None:
    """A lock held by another thread at ``fork`` would never be released in the child."""
    for store in list(_open_stores):
        store._lock = threading.Lock()


class SqliteStore:
    """A ``UsageStore`` in one SQLite file (see the module docstring for what durable means)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._connection: sqlite3.Connection | None = self._connect()
        if not _fork_hook:  # installed with the first store, not at import
            _fork_hook.append(True)
            os.register_at_fork(after_in_child=_after_fork_in_child)
        _open_stores.add(self)

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
        )
        connection.create_function("dec_add", 2, _dec_add, deterministic=True)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        with _immediate(connection):
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    connection.execute(statement)
        return connection

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction on this process's connection, one thread at a time."""
        with self._lock:
            if self._pid != os.getpid():
                # Forked: the parent's connection must not be used (nor closed) here.
                self._pid = os.getpid()
                self._connection = self._connect()
            if self._connection is None:
                raise RuntimeError("the usage store is closed")
            with _immediate(self._connection):
                yield self._connection

    def add(self, usage: Iterable[Usage]) -> None:
        """Accumulate every item, all or nothing; durable (survives kill -9) when it returns."""
        rows = [(u.stream, u.hour, u.tags, text(u.quantity)) for u in usage]
        if not rows:
            return
        with self._transaction() as db:
            db.executemany(_UPSERT, rows)

    def freeze(
        self, *, before_hour: int, open_hour: int, build: PayloadBuilder
    ) -> list[FrozenRecord]:
        """Freeze each stream's usage of every hour before ``before_hour`` into one record."""
        with self._transaction() as db:
            grouped = group_usage(
                db.execute(
                    "SELECT stream, hour, tags, quantity FROM usage WHERE hour < ? "
                    "ORDER BY hour, stream, tags",
                    (before_hour,),
                )
            )
            db.execute("DELETE FROM usage WHERE hour < ?", (before_hour,))

            def has_record(stream: str, hour: int) -> bool:
                return bool(
                    db.execute(
                        "SELECT 1 FROM records WHERE stream = ? AND hour = ?", (stream, hour)
                    ).fetchone()
                )

            def insert(stream: str, hour: int, payload: str, stored: str) -> int:
                cursor = db.execute(
                    "INSERT INTO records (stream, hour, payload, allocations, state) "
                    "VALUES (?, ?, ?, ?, 'frozen')",
                    (stream, hour, payload, stored),
                )
                assert cursor.lastrowid is not None  # sqlite3 sets it after INSERT
                return cursor.lastrowid

            created, carry = freeze_groups(
                grouped, open_hour=open_hour, build=build, has_record=has_record, insert=insert
            )
            db.executemany(_UPSERT, _as_text(carry))
        return created

    def ensure_record(
        self, stream: str, hour: int, *, allocations: Mapping[str, Decimal], payload: str
    ) -> FrozenRecord:
        """Insert a frozen record for ``stream``/``hour`` unless one exists; return the stored one."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO records (stream, hour, payload, allocations, state) "
                "VALUES (?, ?, ?, ?, 'frozen') ON CONFLICT (stream, hour) DO NOTHING",
                (stream, hour, payload, allocations_text(allocations)),
            )
            row = db.execute(
                f"SELECT {COLUMNS} FROM records WHERE stream = ? AND hour = ?",  # noqa: S608 (constant column list)
                (stream, hour),
            ).fetchone()
        return record(row)

    def claim(self, *, owner: str, limit: int, lease_seconds: float) -> list[FrozenRecord]:
        """Lease up to ``limit`` frozen records to ``owner``, oldest hour first."""
        now = time.time()
        with self._transaction() as db:
            rows = db.execute(
                f"SELECT {COLUMNS} FROM records WHERE state = 'frozen' "  # noqa: S608 (constant column list)
                "AND (owner IS NULL OR owner = ? OR lease_until < ?) ORDER BY hour, id LIMIT ?",
                (owner, now, limit),
            ).fetchall()
            db.executemany(
                "UPDATE records SET owner = ?, lease_until = ?, attempts = attempts + 1 "
                "WHERE id = ?",
                [(owner, now + lease_seconds, row[0]) for row in rows],
            )
        return [record(row, attempts_delta=1) for row in rows]

    def claim_record(self, record_id: int, *, owner: str, lease_seconds: float) -> bool:
        """Lease this one record to ``owner`` if it is frozen and not leased by another."""
        now = time.time()
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE records SET owner = ?, lease_until = ?, attempts = attempts + 1 "
                "WHERE id = ? AND state = 'frozen' "
                "AND (owner IS NULL OR owner = ? OR lease_until < ?)",
                (owner, now + lease_seconds, record_id, owner, now),
            )
            return cursor.rowcount == 1

    def _finish(
        self, db: sqlite3.Connection, record_id: int, owner: str, state: RecordState, detail: str
    ) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = db.execute(
            f"SELECT {COLUMNS}, owner, lease_until FROM records WHERE id = ?",  # noqa: S608 (constant column list)
            (record_id,),
        ).fetchone()
        if not check_finish(record_id, owner, state, row, expired=lambda r: r[9] < time.time()):
            return None  # an identical repeat was answered again: nothing changes
        db.execute(
            "UPDATE records SET state = ?, detail = ?, owner = NULL, lease_until = NULL "
            "WHERE id = ?",
            (state, detail, record_id),
        )
        return row

    def mark_sent(self, record_id: int, *, owner: str, detail: str) -> None:
        """The service answered for this record (``detail``: e.g. its MeteringRecordId)."""
        with self._transaction() as db:
            self._finish(db, record_id, owner, "sent", detail)

    def hold(self, record_id: int, *, owner: str, reason: str) -> None:
        """Keep the record, surface ``reason``, and stop sending it."""
        with self._transaction() as db:
            self._finish(db, record_id, owner, "held", reason)

    def carry(self, record_id: int, *, owner: str, to_hour: int, reason: str) -> None:
        """Give up this record's hour: its allocations are added to the open usage of ``to_hour``."""
        with self._transaction() as db:
            row = self._finish(db, record_id, owner, "carried", reason)
            assert row is not None  # only "sent" returns None
            db.executemany(_UPSERT, _as_text(carried_rows(row, to_hour)))

    def release(self, record_id: int, *, owner: str) -> None:
        """End ``owner``'s lease without an answer (a retryable failure): another claim may take it."""
        with self._transaction() as db:
            db.execute(
                "UPDATE records SET owner = NULL, lease_until = NULL WHERE id = ? AND owner = ?",
                (record_id, owner),
            )

    def records(self, *, stream: str | None = None) -> list[FrozenRecord]:
        """Every record (any state), oldest hour first; ``stream`` narrows to one stream."""
        with self._transaction() as db:
            rows = db.execute(
                f"SELECT {COLUMNS} FROM records WHERE ? IS NULL OR stream = ? "  # noqa: S608 (constant column list)
                "ORDER BY hour, id",
                (stream, stream),
            ).fetchall()
        return [record(row) for row in rows]

    def backlog(self) -> list[BacklogEntry]:
        """Every stream/hour that is open, frozen but unsent, or held, oldest first."""
        entries: list[BacklogEntry] = []
        with self._transaction() as db:
            sums: dict[tuple[str, int], Decimal] = {}
            for stream, hour, quantity in db.execute("SELECT stream, hour, quantity FROM usage"):
                sums[stream, hour] = sums.get((stream, hour), Decimal(0)) + Decimal(quantity)
            entries += [BacklogEntry(s, h, "open", q) for (s, h), q in sums.items()]
            for stream, hour, state, allocations, detail in db.execute(
                "SELECT stream, hour, state, allocations, detail FROM records "
                "WHERE state IN ('frozen', 'held')"
            ):
                entries.append(pending_entry(stream, hour, state, allocations, detail))
        return backlog_order(entries)

    def close(self) -> None:
        """Release the connection (only in the process that opened it)."""
        with self._lock:
            if self._connection is not None and self._pid == os.getpid():
                self._connection.close()
            self._connection = None


_UPSERT = (
    "INSERT INTO usage (stream, hour, tags, quantity) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (stream, hour, tags) DO UPDATE SET quantity = dec_add(quantity, excluded.quantity)"
)


@contextmanager
def _immediate(connection: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back if the body raises)."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")

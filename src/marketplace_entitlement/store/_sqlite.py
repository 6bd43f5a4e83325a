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

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from marketplace_entitlement.store._base import (
    BacklogEntry,
    FrozenRecord,
    LeaseLostError,
    PayloadBuilder,
    RecordState,
    Usage,
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
    return _text(Decimal(left) + Decimal(right))


def _text(quantity: Decimal) -> str:
    """Canonical text of a quantity: no exponent, no trailing zeros after the point."""
    text = format(quantity, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _allocations_text(allocations: Mapping[str, Decimal]) -> str:
    return json.dumps({tags: _text(q) for tags, q in sorted(allocations.items())})


def _allocations(text: str) -> dict[str, Decimal]:
    return {tags: Decimal(q) for tags, q in json.loads(text).items()}


class SqliteStore:
    """A ``UsageStore`` in one SQLite file (see the module docstring for what durable means)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._connection: sqlite3.Connection | None = self._connect()

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
        rows = [(u.stream, u.hour, u.tags, _text(u.quantity)) for u in usage]
        if not rows:
            return
        with self._transaction() as db:
            db.executemany(_UPSERT, rows)

    def freeze(
        self, *, before_hour: int, open_hour: int, build: PayloadBuilder
    ) -> list[FrozenRecord]:
        """Freeze each stream's usage of every hour before ``before_hour`` into one record."""
        created: list[FrozenRecord] = []
        with self._transaction() as db:
            grouped: dict[tuple[str, int], dict[str, Decimal]] = {}
            for stream, hour, tags, quantity in db.execute(
                "SELECT stream, hour, tags, quantity FROM usage WHERE hour < ? "
                "ORDER BY hour, stream, tags",
                (before_hour,),
            ):
                grouped.setdefault((stream, hour), {})[tags] = Decimal(quantity)
            db.execute("DELETE FROM usage WHERE hour < ?", (before_hour,))
            carry: list[tuple[str, int, str, str]] = []
            for (stream, hour), allocations in grouped.items():
                exists = db.execute(
                    "SELECT 1 FROM records WHERE stream = ? AND hour = ?", (stream, hour)
                ).fetchone()
                if exists:
                    carry += [(stream, open_hour, t, _text(q)) for t, q in allocations.items()]
                    continue
                decided = build(stream, hour, allocations)
                carry += [(stream, open_hour, t, _text(q)) for t, q in decided.remainder.items()]
                if decided.payload is None:
                    continue
                cursor = db.execute(
                    "INSERT INTO records (stream, hour, payload, allocations, state) "
                    "VALUES (?, ?, ?, ?, 'frozen')",
                    (stream, hour, decided.payload, _allocations_text(decided.sent)),
                )
                assert cursor.lastrowid is not None  # sqlite3 sets it after INSERT
                created.append(
                    FrozenRecord(
                        id=cursor.lastrowid, stream=stream, hour=hour, payload=decided.payload,
                        allocations=dict(decided.sent), state="frozen", attempts=0,
                    )
                )  # fmt: skip
            db.executemany(_UPSERT, [row for row in carry if Decimal(row[3]) != 0])
        return created

    def ensure_record(
        self, stream: str, hour: int, *, allocations: Mapping[str, Decimal], payload: str
    ) -> FrozenRecord:
        """Insert a frozen record for ``stream``/``hour`` unless one exists; return the stored one."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO records (stream, hour, payload, allocations, state) "
                "VALUES (?, ?, ?, ?, 'frozen') ON CONFLICT (stream, hour) DO NOTHING",
                (stream, hour, payload, _allocations_text(allocations)),
            )
            row = db.execute(
                f"SELECT {_COLUMNS} FROM records WHERE stream = ? AND hour = ?",  # noqa: S608 (constant column list)
                (stream, hour),
            ).fetchone()
        return _record(row)

    def claim(self, *, owner: str, limit: int, lease_seconds: float) -> list[FrozenRecord]:
        """Lease up to ``limit`` frozen records to ``owner``, oldest hour first."""
        now = time.time()
        with self._transaction() as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM records WHERE state = 'frozen' "  # noqa: S608 (constant column list)
                "AND (owner IS NULL OR owner = ? OR lease_until < ?) ORDER BY hour, id LIMIT ?",
                (owner, now, limit),
            ).fetchall()
            db.executemany(
                "UPDATE records SET owner = ?, lease_until = ?, attempts = attempts + 1 "
                "WHERE id = ?",
                [(owner, now + lease_seconds, row[0]) for row in rows],
            )
        return [_record(row, attempts_delta=1) for row in rows]

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
            f"SELECT {_COLUMNS}, owner, lease_until FROM records WHERE id = ?",  # noqa: S608 (constant column list)
            (record_id,),
        ).fetchone()
        if row is None:
            raise LeaseLostError(f"no usage record {record_id}")
        current, current_owner, lease_until = row[5], row[8], row[9]
        if current == state and state == "sent":
            return None  # an identical repeat was answered again: nothing changes
        mine = current_owner == owner or current_owner is None or lease_until < time.time()
        if current != "frozen" or not mine:
            raise LeaseLostError(
                f"usage record {record_id} is {current} (lease of {current_owner!r}), "
                f"not frozen and leased to {owner!r}"
            )
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
            stream, allocations = row[1], _allocations(row[4])
            db.executemany(
                _UPSERT, [(stream, to_hour, t, _text(q)) for t, q in allocations.items()]
            )

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
                f"SELECT {_COLUMNS} FROM records WHERE ? IS NULL OR stream = ? "  # noqa: S608 (constant column list)
                "ORDER BY hour, id",
                (stream, stream),
            ).fetchall()
        return [_record(row) for row in rows]

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
                quantity = sum(_allocations(allocations).values(), Decimal(0))
                entries.append(BacklogEntry(stream, hour, state, quantity, detail))
        entries.sort(key=lambda e: (e.hour, e.stream, e.state))
        return entries

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
_COLUMNS = "id, stream, hour, payload, allocations, state, attempts, detail"


def _record(row: Any, *, attempts_delta: int = 0) -> FrozenRecord:
    return FrozenRecord(
        id=row[0], stream=row[1], hour=row[2], payload=row[3], allocations=_allocations(row[4]),
        state=row[5], attempts=row[6] + attempts_delta, detail=row[7],
    )  # fmt: skip


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

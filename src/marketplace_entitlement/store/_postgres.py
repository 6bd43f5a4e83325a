"""The PostgreSQL backend of the usage store: one database shared by every replica and worker.

Exactly one sender per record: ``claim`` leases records with one statement,
``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING``: concurrent claims skip
rows another transaction is leasing instead of waiting for them, and a row is only taken when it is
frozen and its lease is absent, ours, or expired. Leases are measured on the database's clock
(``clock_timestamp()``), so replicas with skewed clocks agree on when a lease has expired. A
sender that dies (kill -9) holds its records until the lease expires; the next claim then resends
the same frozen payload, which the service answers idempotently.

``freeze`` deletes the closed hours' usage with ``DELETE ... RETURNING`` (so an ``add`` racing it
is either in the returned rows or lands afterwards and is carried by the next freeze) and is
serialized across replicas by a transaction-scoped advisory lock.

``add`` is one upsert per item in one transaction, rows in key order so that concurrent writers
never deadlock; a deadlock or serialization failure is retried. Durable when ``commit`` returns
(PostgreSQL's ``synchronous_commit``, on by default).

Besides the ``UsageStore`` protocol: ``take_token`` is a token bucket kept in the database, the
rate limiter every replica shares (BatchMeterUsage's quota is per seller account).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any, TypeVar

import psycopg
from psycopg import errors

from marketplace_entitlement._errors import ConfigurationError
from marketplace_entitlement.store._base import (
    BacklogEntry,
    FrozenRecord,
    PayloadBuilder,
    RecordState,
    Usage,
)
from marketplace_entitlement.store._common import (
    COLUMNS,
    allocations_text,
    backlog_order,
    carried_rows,
    check_finish,
    freeze_groups,
    group_usage,
    pending_entry,
    record,
)

T = TypeVar("T")

CONNECT_TIMEOUT_SECONDS = 10
TRANSACTION_RETRIES = 20
_FREEZE_LOCK = 0x5AA5_0011  # the advisory lock key that serializes freezes

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS usage (
        stream TEXT NOT NULL,
        hour BIGINT NOT NULL,
        tags TEXT NOT NULL,
        quantity NUMERIC NOT NULL,
        PRIMARY KEY (stream, hour, tags))""",
    """CREATE TABLE IF NOT EXISTS records (
        id BIGSERIAL PRIMARY KEY,
        stream TEXT NOT NULL,
        hour BIGINT NOT NULL,
        payload TEXT,
        allocations TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        detail TEXT,
        owner TEXT,
        lease_until DOUBLE PRECISION,
        UNIQUE (stream, hour))""",
    "CREATE INDEX IF NOT EXISTS records_by_state ON records (state, hour, id)",
    """CREATE TABLE IF NOT EXISTS rate_buckets (
        name TEXT PRIMARY KEY,
        tokens DOUBLE PRECISION NOT NULL,
        updated DOUBLE PRECISION NOT NULL)""",
)
_NOW = "extract(epoch from clock_timestamp())::double precision"
_UPSERT = (
    "INSERT INTO usage (stream, hour, tags, quantity) VALUES (%s, %s, %s, %s) "
    "ON CONFLICT (stream, hour, tags) DO UPDATE SET quantity = usage.quantity + excluded.quantity"
)


class PostgresStore:
    """A ``UsageStore`` in a PostgreSQL database (see the module docstring for the design)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[tuple[int, psycopg.Connection[Any]]] = []
        self._closed = False
        try:
            self._transaction(self._create_schema)
        except psycopg.OperationalError as error:
            raise ConfigurationError(
                f"cannot open the PostgreSQL usage store: {error}",
                hint="check MARKETPLACE_USAGE_STORE (host, port, user, database) and that the "
                "server accepts connections from here",
            ) from error

    @staticmethod
    def _create_schema(db: psycopg.Connection[Any]) -> None:
        # Two replicas starting at once must not both try to create the tables.
        db.execute("SELECT pg_advisory_xact_lock(%s)", (_FREEZE_LOCK + 1,))
        for statement in _SCHEMA:
            db.execute(statement)

    def _connection(self) -> psycopg.Connection[Any]:
        """This thread's connection in this process (a forked child opens its own)."""
        if self._closed:
            raise RuntimeError("the usage store is closed")
        pid = os.getpid()
        connection: psycopg.Connection[Any] | None = getattr(self._local, "connection", None)
        if connection is None or getattr(self._local, "pid", None) != pid or connection.closed:
            connection = psycopg.connect(self.url, connect_timeout=CONNECT_TIMEOUT_SECONDS)
            self._local.connection, self._local.pid = connection, pid
            with self._lock:
                self._connections.append((pid, connection))
        return connection

    def _transaction(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Run ``work`` in one transaction; retry it on deadlock or serialization failure."""
        for attempt in range(TRANSACTION_RETRIES):
            db = self._connection()
            try:
                with db.transaction():
                    return work(db)
            except (errors.DeadlockDetected, errors.SerializationFailure):
                if attempt == TRANSACTION_RETRIES - 1:
                    raise
            except psycopg.OperationalError:
                # A broken connection (the server restarted): reconnect once per attempt.
                self._local.connection = None
                if attempt == TRANSACTION_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    # -- the protocol ---------------------------------------------------------------------------

    def add(self, usage: Iterable[Usage]) -> None:
        """Accumulate every item, all or nothing; durable when it returns."""
        rows = sorted(
            ((u.stream, u.hour, u.tags, u.quantity) for u in usage),
            key=lambda row: (str(row[0]), row[1], str(row[2])),
        )
        if rows:
            self._transaction(lambda db: db.cursor().executemany(_UPSERT, rows))

    def freeze(
        self, *, before_hour: int, open_hour: int, build: PayloadBuilder
    ) -> list[FrozenRecord]:
        """Freeze each stream's usage of every hour before ``before_hour`` into one record."""

        def work(db: psycopg.Connection[Any]) -> list[FrozenRecord]:
            db.execute("SELECT pg_advisory_xact_lock(%s)", (_FREEZE_LOCK,))
            grouped = group_usage(
                db.execute(
                    "DELETE FROM usage WHERE hour < %s RETURNING stream, hour, tags, quantity",
                    (before_hour,),
                )
            )

            def has_record(stream: str, hour: int) -> bool:
                return bool(
                    db.execute(
                        "SELECT 1 FROM records WHERE stream = %s AND hour = %s", (stream, hour)
                    ).fetchone()
                )

            def insert(stream: str, hour: int, payload: str, stored: str) -> int:
                row = db.execute(
                    "INSERT INTO records (stream, hour, payload, allocations, state) "
                    "VALUES (%s, %s, %s, %s, 'frozen') RETURNING id",
                    (stream, hour, payload, stored),
                ).fetchone()
                assert row is not None  # INSERT ... RETURNING always returns the row
                return int(row[0])

            created, carry = freeze_groups(
                grouped, open_hour=open_hour, build=build, has_record=has_record, insert=insert
            )
            carry.sort(key=lambda r: (r[0], r[1], r[2]))
            if carry:
                db.cursor().executemany(_UPSERT, carry)
            return created

        return self._transaction(work)

    def ensure_record(
        self, stream: str, hour: int, *, allocations: Mapping[str, Decimal], payload: str
    ) -> FrozenRecord:
        """Insert a frozen record for ``stream``/``hour`` unless one exists; return the stored one."""

        def work(db: psycopg.Connection[Any]) -> FrozenRecord:
            db.execute(
                "INSERT INTO records (stream, hour, payload, allocations, state) "
                "VALUES (%s, %s, %s, %s, 'frozen') ON CONFLICT (stream, hour) DO NOTHING",
                (stream, hour, payload, allocations_text(allocations)),
            )
            return record(
                db.execute(
                    f"SELECT {COLUMNS} FROM records WHERE stream = %s AND hour = %s",  # noqa: S608 (constant column list)
                    (stream, hour),
                ).fetchone()
            )

        return self._transaction(work)

    def claim(self, *, owner: str, limit: int, lease_seconds: float) -> list[FrozenRecord]:
        """Lease up to ``limit`` frozen records to ``owner``, oldest hour first (SKIP LOCKED)."""

        def work(db: psycopg.Connection[Any]) -> list[FrozenRecord]:
            rows = db.execute(
                f"UPDATE records SET owner = %s, lease_until = {_NOW} + %s, "  # noqa: S608 (constant SQL fragments)
                "attempts = attempts + 1 WHERE id IN ("
                "SELECT id FROM records WHERE state = 'frozen' "
                f"AND (owner IS NULL OR owner = %s OR lease_until < {_NOW}) "
                "ORDER BY hour, id LIMIT %s FOR UPDATE SKIP LOCKED) "
                f"RETURNING {COLUMNS}",
                (owner, lease_seconds, owner, limit),
            ).fetchall()
            return sorted((record(row) for row in rows), key=lambda r: (r.hour, r.id))

        return self._transaction(work)

    def claim_record(self, record_id: int, *, owner: str, lease_seconds: float) -> bool:
        """Lease this one record to ``owner`` if it is frozen and not leased by another."""

        def work(db: psycopg.Connection[Any]) -> bool:
            cursor = db.execute(
                f"UPDATE records SET owner = %s, lease_until = {_NOW} + %s, "  # noqa: S608 (constant SQL fragments)
                "attempts = attempts + 1 WHERE id = %s AND state = 'frozen' "
                f"AND (owner IS NULL OR owner = %s OR lease_until < {_NOW})",
                (owner, lease_seconds, record_id, owner),
            )
            return cursor.rowcount == 1

        return self._transaction(work)

    @staticmethod
    def _finish(
        db: psycopg.Connection[Any], record_id: int, owner: str, state: RecordState, detail: str
    ) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = db.execute(
            f"SELECT {COLUMNS}, owner, lease_until < {_NOW} FROM records "  # noqa: S608 (constant SQL fragments)
            "WHERE id = %s FOR UPDATE",
            (record_id,),
        ).fetchone()
        if not check_finish(record_id, owner, state, row, expired=lambda r: bool(r[9])):
            return None  # an identical repeat was answered again: nothing changes
        db.execute(
            "UPDATE records SET state = %s, detail = %s, owner = NULL, lease_until = NULL "
            "WHERE id = %s",
            (state, detail, record_id),
        )
        return row

    def mark_sent(self, record_id: int, *, owner: str, detail: str) -> None:
        """The service answered for this record (``detail``: e.g. its MeteringRecordId)."""
        self._transaction(lambda db: self._finish(db, record_id, owner, "sent", detail))

    def hold(self, record_id: int, *, owner: str, reason: str) -> None:
        """Keep the record, surface ``reason``, and stop sending it."""
        self._transaction(lambda db: self._finish(db, record_id, owner, "held", reason))

    def carry(self, record_id: int, *, owner: str, to_hour: int, reason: str) -> None:
        """Give up this record's hour: its allocations are added to the open usage of ``to_hour``."""

        def work(db: psycopg.Connection[Any]) -> None:
            row = self._finish(db, record_id, owner, "carried", reason)
            assert row is not None  # only "sent" returns None
            rows = carried_rows(row, to_hour)
            if rows:
                db.cursor().executemany(_UPSERT, rows)

        self._transaction(work)

    def release(self, record_id: int, *, owner: str) -> None:
        """End ``owner``'s lease without an answer (a retryable failure): another claim may take it."""
        self._transaction(
            lambda db: db.execute(
                "UPDATE records SET owner = NULL, lease_until = NULL WHERE id = %s AND owner = %s",
                (record_id, owner),
            )
        )

    def records(self, *, stream: str | None = None) -> list[FrozenRecord]:
        """Every record (any state), oldest hour first; ``stream`` narrows to one stream."""
        rows = self._transaction(
            lambda db: db.execute(
                f"SELECT {COLUMNS} FROM records "  # noqa: S608 (constant column list)
                "WHERE %s::text IS NULL OR stream = %s ORDER BY hour, id",
                (stream, stream),
            ).fetchall()
        )
        return [record(row) for row in rows]

    def backlog(self) -> list[BacklogEntry]:
        """Every stream/hour that is open, frozen but unsent, or held, oldest first."""

        def work(db: psycopg.Connection[Any]) -> list[BacklogEntry]:
            entries = [
                BacklogEntry(stream, hour, "open", Decimal(quantity))
                for stream, hour, quantity in db.execute(
                    "SELECT stream, hour, sum(quantity) FROM usage GROUP BY stream, hour"
                )
            ]
            for stream, hour, state, allocations, detail in db.execute(
                "SELECT stream, hour, state, allocations, detail FROM records "
                "WHERE state IN ('frozen', 'held')"
            ):
                entries.append(pending_entry(stream, hour, state, allocations, detail))
            return entries

        return backlog_order(self._transaction(work))

    # -- beyond the protocol ----------------------------------------------------------------------

    def take_token(self, name: str, *, rate: float, burst: float) -> float:
        """Take one token from the shared bucket ``name``; return 0, or the seconds to wait first.

        The bucket refills at ``rate`` tokens per second up to ``burst``, on the database's clock;
        every replica taking from the same bucket shares one quota.
        """

        def work(db: psycopg.Connection[Any]) -> float:
            db.execute(
                f"INSERT INTO rate_buckets (name, tokens, updated) VALUES (%s, %s, {_NOW}) "  # noqa: S608 (constant SQL fragments)
                "ON CONFLICT (name) DO NOTHING",
                (name, burst),
            )
            row = db.execute(
                f"SELECT tokens, updated, {_NOW} FROM rate_buckets WHERE name = %s FOR UPDATE",  # noqa: S608 (constant SQL fragments)
                (name,),
            ).fetchone()
            assert row is not None  # inserted above
            tokens, updated, now = float(row[0]), float(row[1]), float(row[2])
            tokens = min(burst, tokens + max(0.0, now - updated) * rate)
            wait = 0.0
            if tokens >= 1:
                tokens -= 1
            else:
                wait = (1 - tokens) / rate
            db.execute(
                "UPDATE rate_buckets SET tokens = %s, updated = %s WHERE name = %s",
                (tokens, now, name),
            )
            return wait

        return self._transaction(work)

    def close(self) -> None:
        """Close every connection this process opened."""
        with self._lock:
            self._closed = True
            mine = [c for pid, c in self._connections if pid == os.getpid()]
            self._connections = []
        for connection in mine:
            connection.close()

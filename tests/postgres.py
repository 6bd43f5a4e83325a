"""A real PostgreSQL server for the tests: initdb + pg_ctl in a temporary directory, per session.

Debian's ``postgresql`` package provides the binaries (``scripts/test`` installs it when missing).
The server refuses to run as root, so as root it runs as the ``postgres`` user the package creates.
It listens on a free loopback port and a Unix socket in its own directory, trusts local
connections, and is stopped (``pg_ctl stop -m immediate``) at the end of the session. Each test
gets its own schema (``postgres_url``), so tests never see each other's tables.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class PostgresServer:
    """A running server: its port, superuser, and how to stop it."""

    port: int
    user: str
    data_dir: Path

    def url(self, database: str = "postgres", *, schema: str | None = None) -> str:
        """A ``postgresql://`` URL; ``schema`` becomes the connection's search_path."""
        base = f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"
        if schema is None:
            return base
        options = {"options": f"-c search_path={schema}"}
        return base + "?" + urllib.parse.urlencode(options, quote_via=urllib.parse.quote)


def find_bindir() -> Path | None:
    """The newest installed PostgreSQL's bin directory (Debian layout), or one on PATH."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    return Path(found).resolve().parent if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_server_user(command: list[str]) -> list[str]:
    """Run ``command`` as the ``postgres`` user when we are root (the server refuses root)."""
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


def start_server(base: Path, *, fast: bool = True) -> PostgresServer:
    """Run initdb, then start a server under ``base``; ``fast`` turns fsync off (tests only)."""
    bindir = find_bindir()
    if bindir is None:
        raise FileNotFoundError("no PostgreSQL server binaries (install Debian's postgresql)")
    data = base / "data"
    sockets = base / "sockets"
    sockets.mkdir(parents=True)
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        for path in (base, sockets):
            os.chown(path, account.pw_uid, account.pw_gid)
    user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    subprocess.run(
        _as_server_user(
            [str(bindir / "initdb"), "-D", str(data), "-U", user, "--auth=trust",
             "-E", "UTF8", "--no-sync", "--locale=C"]
        ),
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    port = _free_port()
    options = f"-p {port} -h 127.0.0.1 -k {sockets} -c max_connections=200"
    if fast:
        options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    subprocess.run(
        _as_server_user(
            [str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(base / "log"),
             "-w", "-t", "60", "start"]
        ),
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return PostgresServer(port=port, user=user, data_dir=data)


def stop_server(server: PostgresServer) -> None:
    """Stop the server at once (its data is thrown away)."""
    bindir = find_bindir()
    assert bindir is not None
    subprocess.run(
        _as_server_user(
            [str(bindir / "pg_ctl"), "-D", str(server.data_dir), "-m", "immediate", "-w", "stop"]
        ),
        check=False, capture_output=True, timeout=60,
    )  # fmt: skip


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session, started on first use and stopped at the end.

    Skipped (failed under CI) when no server binaries are installed: ``scripts/test`` installs them.
    """
    if find_bindir() is None:
        message = "PostgreSQL is not installed (scripts/test installs Debian's postgresql)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    base = Path(tempfile.mkdtemp(prefix="me-postgres-"))
    server = start_server(base)
    try:
        yield server
    finally:
        stop_server(server)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A URL whose connections see a fresh, empty schema of their own."""
    import psycopg  # noqa: PLC0415  (only the PostgreSQL tests need it)

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server.url(), autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    return postgres_server.url(schema=schema)

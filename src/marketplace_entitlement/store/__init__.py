"""The durable usage store shared by container metering and SaaS reporting (see ``_base``)."""

from __future__ import annotations

from marketplace_entitlement._errors import ConfigurationError
from marketplace_entitlement.store._base import (
    HOUR,
    BacklogEntry,
    Frozen,
    FrozenRecord,
    LeaseLostError,
    PayloadBuilder,
    RecordState,
    Usage,
    UsageStore,
    hour_of,
    hour_text,
)

__all__ = [
    "HOUR",
    "BacklogEntry",
    "Frozen",
    "FrozenRecord",
    "LeaseLostError",
    "PayloadBuilder",
    "RecordState",
    "Usage",
    "UsageStore",
    "hour_of",
    "hour_text",
    "open_store",
    "sqlite_url",
]

SQLITE_PREFIX = "sqlite:///"


def sqlite_url(path: str) -> str:
    """The store URL of a SQLite file (``sqlite:///`` followed by the path, absolute or relative)."""
    return SQLITE_PREFIX + path


def open_store(url: str, *, variable: str | None = None) -> UsageStore:
    """Open the store a URL names: ``sqlite:///PATH`` (``sqlite:////abs/path`` is absolute).

    ``variable`` names the setting the URL came from, for the error message. Raises
    ConfigurationError for a URL this package cannot open.
    """
    if url.startswith(SQLITE_PREFIX):
        path = url[len(SQLITE_PREFIX) :]
        if not path or path == ":memory:":
            raise ConfigurationError(
                f"{variable or 'the usage store URL'} names no SQLite file: {url!r}",
                variable=variable,
                hint="give a file path, e.g. sqlite:////var/lib/app/usage.sqlite3 (absolute)",
            )
        from marketplace_entitlement.store._sqlite import SqliteStore  # noqa: PLC0415 (only the backend in use is imported)

        return SqliteStore(path)
    if url.startswith(POSTGRES_PREFIXES):
        return _open_postgres(url, variable)
    scheme = url.split(":", 1)[0] if ":" in url else url
    raise ConfigurationError(
        f"{variable or 'the usage store URL'} has an unsupported scheme {scheme!r}: {url!r}",
        variable=variable,
        hint="use sqlite:///PATH or postgresql://USER@HOST/DATABASE",
    )


POSTGRES_PREFIXES = ("postgresql://", "postgres://")


def _open_postgres(url: str, variable: str | None) -> UsageStore:
    """The PostgreSQL backend (psycopg 3, the ``postgresql`` extra), imported only when used."""
    try:
        from marketplace_entitlement.store._postgres import PostgresStore  # noqa: PLC0415
    except ImportError as error:
        raise ConfigurationError(
            f"{variable or 'the usage store URL'} names PostgreSQL, but psycopg is not installed",
            variable=variable,
            hint="pip install 'marketplace-entitlement[postgresql]'",
        ) from error
    return PostgresStore(url)

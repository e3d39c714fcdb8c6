"""SQLAlchemy engines for the history: SQLite pragmas, PostgreSQL pool settings, error translation."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import ConnectionPoolEntry

from pipeline.storage.database import driver_url, safe_url
from pipeline.storage.errors import InvalidDatabaseUrl, StorageError, StorageUnavailable


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers (reports) do not block the writer
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def open_engine(url: str) -> Engine:
    """An engine for ``url``; raises :class:`InvalidDatabaseUrl` for a URL that cannot work."""
    try:
        parsed = make_url(driver_url(url))
    except sa_exc.ArgumentError as exc:
        raise InvalidDatabaseUrl(url, "cannot be parsed") from exc
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise InvalidDatabaseUrl(url, f"unsupported database {backend!r}: use sqlite or postgresql")
    try:
        if backend == "sqlite":
            engine = create_engine(parsed)
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = create_engine(parsed, pool_pre_ping=True, connect_args={"connect_timeout": 10})
    except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError) as exc:
        raise InvalidDatabaseUrl(url, str(exc)) from exc
    except ImportError as exc:
        raise InvalidDatabaseUrl(url, f"driver not installed ({exc.name}): pip install 'psycopg[binary]'") from exc
    return engine


@contextmanager
def translate_errors(url: str) -> Iterator[None]:
    """Turn driver errors into :class:`StorageError`: connection problems become
    :class:`StorageUnavailable` (retry later), everything else a plain :class:`StorageError`."""
    try:
        yield
    except StorageError:
        raise
    except sa_exc.DBAPIError as exc:
        detail = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
        lost = exc.connection_invalidated or isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError)
        if lost and "no such table" not in detail:  # SQLite reports a missing table as operational
            raise StorageUnavailable(safe_url(url), detail) from exc
        raise StorageError(f"database {safe_url(url)}: {detail}") from exc
    except sa_exc.SQLAlchemyError as exc:
        raise StorageError(f"database {safe_url(url)}: {exc}") from exc

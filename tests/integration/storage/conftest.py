"""The backends of the storage contract suite: SQLite (a file per test), PostgreSQL and memory.

``store`` / ``history_url`` / ``empty_history_url`` / ``backend`` run a test on all three backends
(the contract: test_contract.py, test_funnel.py); ``db_url`` / ``empty_db`` on the two SQL ones
(migrations, commands, the sink).

PostgreSQL: one scratch database per test session on ``$LEADFLOW_TEST_PG`` (default
``postgresql://postgres@127.0.0.1:5432/test``, used only to create and drop it), one fresh schema
per test (selected through ``search_path`` in the URL), dropped with the database at the end.
The PostgreSQL cases are skipped, with the reason, only when the server cannot be reached.
Memory: a ``memory://NAME`` database per test, dropped at the end.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from pipeline.state_machine.records import Alert, ContactSnapshot, Transition
from pipeline.storage import HistoryStore, MemoryHistoryStore, SqlHistoryStore, open_history_store, upgrade_database
from pipeline.storage.database import driver_url
from pipeline.storage.memory.store import drop_memory_database, set_memory_database_available
from pipeline.storage.sql.tables import alerts, contacts, transitions

ADMIN_URL = os.environ.get("LEADFLOW_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
FIXTURES = Path(__file__).parents[2] / "fixtures" / "storage"
_schemas = itertools.count(1)


def load_jsonl(name: str, kind: type) -> list:  # type: ignore[type-arg]
    with open(FIXTURES / name, "rb") as stream:
        return [msgspec.json.decode(line, type=kind) for line in stream if line.strip()]


def fixture_history() -> tuple[list[Transition], list[Alert], list[ContactSnapshot]]:
    return (
        load_jsonl("transitions.jsonl", Transition),
        load_jsonl("alerts.jsonl", Alert),
        load_jsonl("contacts.jsonl", ContactSnapshot),
    )


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A scratch database for this session; its URL (psycopg driver)."""
    admin = create_engine(driver_url(ADMIN_URL), isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    try:
        with admin.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # any failure to connect means "no server here"
        admin.dispose()
        pytest.skip(f"PostgreSQL unreachable at {ADMIN_URL} ({type(exc).__name__}); set LEADFLOW_TEST_PG")
    name = f"leadflow_storage_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(driver_url(ADMIN_URL)).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _fresh_postgres_schema(database_url: str) -> str:
    schema = f"t{next(_schemas)}"
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    return make_url(database_url).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database (no tables), on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'history.db'}"
    return _fresh_postgres_schema(request.getfixturevalue("postgres_database"))


@pytest.fixture
def db_url(empty_db: str) -> str:
    """The URL of a database upgraded to the newest schema."""
    upgrade_database(empty_db)
    return empty_db


Rows = list[list[tuple[object, ...]]]


def sql_dump(store: HistoryStore) -> Rows:
    """Every row of transitions, alerts, contacts (by primary key; ``updated_at`` is the last column)."""
    assert isinstance(store, SqlHistoryStore)
    contact_columns = [c for c in contacts.columns if c.name != "updated_at"] + [contacts.c.updated_at]
    with store.engine.connect() as connection:
        return [
            [tuple(r) for r in connection.execute(select(*columns).order_by(*t.primary_key.columns))]
            for t, columns in ((transitions, list(transitions.columns)), (alerts, list(alerts.columns)),
                               (contacts, contact_columns))
        ]


def memory_dump(store: HistoryStore) -> Rows:
    assert isinstance(store, MemoryHistoryStore)
    return [list(rows) for rows in store.dump()]


@dataclass(frozen=True)
class Backend:
    """One backend of the contract suite, and what a test needs to know that differs between them."""

    name: str
    adapter: type
    empty_url: str  # a store whose schema was never created (``leadflow db upgrade`` not run)
    unreachable_url: str  # a store that exists in name but cannot be reached: StorageUnavailable
    dump: Callable[[HistoryStore], Rows]  # the stored rows, to compare two states of one store

    def counts(self, store: HistoryStore) -> tuple[int, int, int]:
        """How many transitions, alerts and contacts are stored."""
        if isinstance(store, SqlHistoryStore):
            with store.engine.connect() as connection:
                return tuple(  # type: ignore[return-value]
                    connection.execute(select(func.count()).select_from(table)).scalar_one()
                    for table in (transitions, alerts, contacts)
                )
        ts, als, cs = self.dump(store)
        return len(ts), len(als), len(cs)


@pytest.fixture(params=["sqlite", "postgresql", "memory"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        yield Backend("sqlite", SqlHistoryStore, f"sqlite:///{tmp_path / 'history.db'}",
                      f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}", sql_dump)
    elif request.param == "postgresql":
        empty = _fresh_postgres_schema(request.getfixturevalue("postgres_database"))
        yield Backend("postgresql", SqlHistoryStore, empty, "postgresql://postgres@127.0.0.1:1/none", sql_dump)
    else:
        name = f"contract-{uuid.uuid4().hex[:8]}"
        empty, away = f"memory://{name}", f"memory://{name}-away"
        upgrade_database(away)
        set_memory_database_available(away, False)  # an outage: the store is there but unreachable
        yield Backend("memory", MemoryHistoryStore, empty, away, memory_dump)
        drop_memory_database(empty)
        drop_memory_database(away)


@pytest.fixture
def empty_history_url(backend: Backend) -> str:
    """The URL of an empty store (no schema yet), on each of the three backends."""
    return backend.empty_url


@pytest.fixture
def history_url(empty_history_url: str) -> str:
    """The URL of a store upgraded to the newest schema, on each of the three backends."""
    upgrade_database(empty_history_url)
    return empty_history_url


@pytest.fixture
def store(history_url: str) -> Iterator[HistoryStore]:
    with open_history_store(history_url) as opened:
        yield opened

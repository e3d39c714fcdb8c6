"""Real databases for the storage contract suite: SQLite (a file per test) and PostgreSQL.

PostgreSQL: one scratch database per test session on ``$LEADFLOW_TEST_PG`` (default
``postgresql://postgres@127.0.0.1:5432/test``, used only to create and drop it), one fresh schema
per test (selected through ``search_path`` in the URL), dropped with the database at the end.
The PostgreSQL cases are skipped, with the reason, only when the server cannot be reached.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from pipeline.state_machine.records import Alert, ContactSnapshot, Transition
from pipeline.storage import SqlHistoryStore, upgrade_database
from pipeline.storage.database import driver_url

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


@pytest.fixture
def store(db_url: str) -> Iterator[SqlHistoryStore]:
    with SqlHistoryStore(db_url) as opened:
        yield opened

"""What only the SQL adapter has to show: a server connection lost under it is replaced."""

from __future__ import annotations

import pytest

from pipeline.storage import SqlHistoryStore

from .conftest import fixture_history, sql_dump

pytestmark = pytest.mark.integration


def _counts(store: SqlHistoryStore) -> tuple[int, int, int]:
    ts, als, cs = sql_dump(store)
    return len(ts), len(als), len(cs)


def test_a_dropped_connection_is_replaced_transparently(db_url: str) -> None:
    if db_url.startswith("sqlite"):
        pytest.skip("an embedded SQLite file has no server connection to lose")
    ts, als, cs = fixture_history()
    with SqlHistoryStore(db_url) as store:
        store.write_batch(ts[:1], [], [])
        with store.engine.connect() as connection:
            pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        with SqlHistoryStore(db_url) as other, other.engine.connect() as connection:
            connection.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
        store.write_batch(ts, als, cs)  # the pool notices the dead connection and opens a new one
        assert _counts(store) == (len(ts), len(als), len(cs))

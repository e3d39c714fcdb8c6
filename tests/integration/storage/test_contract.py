"""The storage contract: every HistoryStore behaves the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
from sqlalchemy import func, select

from pipeline.storage import (
    HistoryStore,
    HistoryWriter,
    InvalidAcknowledgement,
    SchemaNotReady,
    SqlHistoryStore,
    StorageUnavailable,
    UnknownAlert,
    write_replay_history,
)
from pipeline.storage.tables import alerts, contacts, transitions

from .conftest import fixture_history

pytestmark = pytest.mark.integration


def _counts(store: SqlHistoryStore) -> tuple[int, int, int]:
    with store.engine.connect() as connection:
        return tuple(  # type: ignore[return-value]
            connection.execute(select(func.count()).select_from(table)).scalar_one()
            for table in (transitions, alerts, contacts)
        )


def _dump(store: SqlHistoryStore) -> list[list[tuple[object, ...]]]:
    with store.engine.connect() as connection:
        return [
            [tuple(r) for r in connection.execute(select(t).order_by(*t.primary_key.columns))]
            for t in (transitions, alerts, contacts)
        ]


def test_the_adapter_satisfies_the_protocol(store: SqlHistoryStore) -> None:
    typed: HistoryStore = store
    assert typed is store


def test_written_records_read_back_field_for_field(store: SqlHistoryStore) -> None:
    ts, als, cs = fixture_history()
    store.write_batch(ts, als, cs)
    history = store.contact_timeline("A")
    assert history is not None
    assert history.contact == next(c for c in cs if c.contact_id == "A")
    assert list(history.transitions) == [t for t in ts if t.contact_id == "A"]
    assert [a.alert for a in history.alerts] == [a for a in als if a.contact_id == "A"]
    assert [a.acknowledged_at for a in history.alerts] == [None]
    # Skipped stages and null triggers survive the round trip.
    b = store.contact_timeline("B")
    assert b is not None and b.transitions[0].skipped == ("lead",) and b.transitions[1].trigger_event_id is None


def test_the_same_batch_twice_gives_the_same_rows(store: SqlHistoryStore) -> None:
    ts, als, cs = fixture_history()
    store.write_batch(ts, als, cs)
    first = _dump(store)
    store.write_batch(ts, als, cs)
    store.write_batch(list(reversed(ts)), als[:1], cs[:2])
    # updated_at (wall clock of the write) may move; everything else must not.
    assert [rows for rows in _dump(store)[:2]] == first[:2]
    assert [r[:-1] for r in _dump(store)[2]] == [r[:-1] for r in first[2]]
    assert _counts(store) == (len(ts), len(als), len(cs))


def test_a_contact_keeps_its_newest_snapshot(store: SqlHistoryStore) -> None:
    _, _, cs = fixture_history()
    newer = next(c for c in cs if c.contact_id == "A")
    older = msgspec.structs.replace(newer, stage="lead", last_event_at="2025-01-01T00:00:00Z", score=10.0)
    store.write_batch([], [], [newer])
    store.write_batch([], [], [older])  # an older snapshot arriving late loses
    stored = store.contact_timeline("A")
    assert stored is not None and stored.contact == newer
    # In one batch, the newest wins whatever the order.
    z_old, z_new = (msgspec.structs.replace(c, contact_id="Z") for c in (older, newer))
    store.write_batch([], [], [z_old, z_new])
    y_new, y_old = (msgspec.structs.replace(c, contact_id="Y") for c in (newer, older))
    store.write_batch([], [], [y_new, y_old])
    for contact_id in ("Z", "Y"):
        history = store.contact_timeline(contact_id)
        assert history is not None and history.contact is not None and history.contact.stage == "customer"
    # Same time, later stage entry (cooling fired by --until): the incoming snapshot wins.
    cooled = msgspec.structs.replace(newer, stage="buyer", stage_entered_at="2025-03-01T00:00:00Z")
    store.write_batch([], [], [cooled])
    history = store.contact_timeline("A")
    assert history is not None and history.contact == cooled


def test_an_unknown_contact_has_no_history(store: SqlHistoryStore) -> None:
    assert store.contact_timeline("nobody") is None


def test_a_contact_without_a_snapshot_still_has_a_timeline(store: SqlHistoryStore) -> None:
    ts, _, _ = fixture_history()
    store.write_batch(ts, [], [])
    history = store.contact_timeline("F")
    assert history is not None and history.contact is None and len(history.transitions) == 1


def test_timeline_interleaves_alerts_after_their_transition(store: SqlHistoryStore) -> None:
    store.write_batch(*fixture_history())
    history = store.contact_timeline("A")
    assert history is not None
    kinds = [getattr(e, "transition_id", None) or e.alert.alert_id for e in history.timeline()]  # type: ignore[union-attr]
    assert kinds == ["t-a1", "t-a2", "t-a3", "al-a", "t-a4", "t-a5"]


def test_acknowledge_is_idempotent_and_keeps_the_first_time(store: SqlHistoryStore) -> None:
    store.write_batch(*fixture_history())
    first = store.acknowledge("al-a", datetime(2025, 1, 2, 0, 30, tzinfo=UTC))
    assert first.newly_acknowledged and first.acknowledged_at == "2025-01-02T00:30:00Z"
    again = store.acknowledge("al-a", datetime(2025, 1, 3, tzinfo=UTC))
    assert not again.newly_acknowledged and again.acknowledged_at == "2025-01-02T00:30:00Z"
    history = store.contact_timeline("A")
    assert history is not None and history.alerts[0].acknowledged_at == "2025-01-02T00:30:00Z"
    # Re-writing the alert (a redelivery) does not clear the acknowledgement.
    store.write_batch([], fixture_history()[1], [])
    history = store.contact_timeline("A")
    assert history is not None and history.alerts[0].acknowledged_at == "2025-01-02T00:30:00Z"


def test_acknowledge_refuses_unknown_alerts_and_impossible_times(store: SqlHistoryStore) -> None:
    store.write_batch(*fixture_history())
    with pytest.raises(UnknownAlert, match="no alert with id 'nope'"):
        store.acknowledge("nope", datetime(2025, 1, 2, tzinfo=UTC))
    with pytest.raises(InvalidAcknowledgement, match="cannot be acknowledged earlier"):
        store.acknowledge("al-c", datetime(2025, 1, 14, tzinfo=UTC))


def test_the_writer_batches_and_is_idempotent(db_url: str, store: SqlHistoryStore) -> None:
    ts, als, cs = fixture_history()
    counts = write_replay_history(db_url, ts, als, cs, batch_size=4)
    assert (counts.transitions, counts.alerts, counts.contacts) == (len(ts), len(als), len(cs))
    # Flushes at 4, 8, 12 transitions; 3 + 3 alerts; 4 contacts; the last 2 contacts on close.
    assert counts.batches == 6
    before = _dump(store)
    write_replay_history(db_url, ts, als, cs, batch_size=1000)
    assert _dump(store)[:2] == before[:2]
    with HistoryWriter(db_url, batch_size=100) as writer:
        writer.add_transitions(ts)
        assert writer.pending == len(ts)  # below the batch size: nothing written yet
    assert writer.pending == 0 and writer.counts.batches == 1


def test_a_database_without_tables_is_not_ready(empty_db: str) -> None:
    with pytest.raises(SchemaNotReady, match=r"has no Leadflow tables.*leadflow db upgrade"):
        SqlHistoryStore(empty_db)


def test_an_unreachable_database_raises_storage_unavailable(tmp_path: Path, empty_db: str) -> None:
    if empty_db.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}"
    else:
        url = "postgresql://postgres@127.0.0.1:1/none"
    with pytest.raises(StorageUnavailable, match="is unavailable"):
        SqlHistoryStore(url)


def test_writing_to_a_database_that_went_away_raises_storage_unavailable(db_url: str) -> None:
    ts, als, cs = fixture_history()
    away = "sqlite:////nonexistent-dir/x.db" if db_url.startswith("sqlite") else "postgresql://postgres@127.0.0.1:1/x"
    with SqlHistoryStore(away, check_schema=False) as store, pytest.raises(StorageUnavailable) as caught:
        store.write_batch(ts, als, cs)
    assert "is unavailable" in str(caught.value)
    # The batch can be written again, whole, once the database is back.
    with SqlHistoryStore(db_url) as store:
        store.write_batch(ts, als, cs)
        store.write_batch(ts, als, cs)
        assert _counts(store) == (len(ts), len(als), len(cs))


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

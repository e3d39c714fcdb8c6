"""The storage contract: every HistoryStore behaves the same on SQLite, PostgreSQL and in memory.

Each test runs once per backend (the ``backend`` fixture in conftest.py); what differs between
the backends (the URLs of a store without a schema and of an unreachable one, how to list the
stored rows) comes from that fixture, never from the test.
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from pipeline.storage import (
    HistoryStore,
    HistoryWriter,
    InvalidAcknowledgement,
    SchemaNotReady,
    StorageUnavailable,
    UnknownAlert,
    open_history_store,
    write_replay_history,
)

from .conftest import Backend, fixture_history

pytestmark = pytest.mark.integration


def test_the_adapter_satisfies_the_protocol(backend: Backend, store: HistoryStore) -> None:
    typed: HistoryStore = store
    assert typed is store
    assert isinstance(store, backend.adapter)  # the factory picked this backend's adapter


def test_written_records_read_back_field_for_field(store: HistoryStore) -> None:
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


def test_the_same_batch_twice_gives_the_same_rows(backend: Backend, store: HistoryStore) -> None:
    ts, als, cs = fixture_history()
    store.write_batch(ts, als, cs)
    first = backend.dump(store)
    store.write_batch(ts, als, cs)
    store.write_batch(list(reversed(ts)), als[:1], cs[:2])
    # updated_at (wall clock of the write) may move; everything else must not.
    assert [rows for rows in backend.dump(store)[:2]] == first[:2]
    assert [r[:-1] for r in backend.dump(store)[2]] == [r[:-1] for r in first[2]]
    assert backend.counts(store) == (len(ts), len(als), len(cs))


def test_a_contact_keeps_its_newest_snapshot(store: HistoryStore) -> None:
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


def test_an_unknown_contact_has_no_history(store: HistoryStore) -> None:
    assert store.contact_timeline("nobody") is None


def test_a_contact_without_a_snapshot_still_has_a_timeline(store: HistoryStore) -> None:
    ts, _, _ = fixture_history()
    store.write_batch(ts, [], [])
    history = store.contact_timeline("F")
    assert history is not None and history.contact is None and len(history.transitions) == 1


def test_timeline_interleaves_alerts_after_their_transition(store: HistoryStore) -> None:
    store.write_batch(*fixture_history())
    history = store.contact_timeline("A")
    assert history is not None
    kinds = [getattr(e, "transition_id", None) or e.alert.alert_id for e in history.timeline()]  # type: ignore[union-attr]
    assert kinds == ["t-a1", "t-a2", "t-a3", "al-a", "t-a4", "t-a5"]


def test_acknowledge_is_idempotent_and_keeps_the_first_time(store: HistoryStore) -> None:
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


def test_acknowledge_refuses_unknown_alerts_and_impossible_times(store: HistoryStore) -> None:
    store.write_batch(*fixture_history())
    with pytest.raises(UnknownAlert, match="no alert with id 'nope'"):
        store.acknowledge("nope", datetime(2025, 1, 2, tzinfo=UTC))
    with pytest.raises(InvalidAcknowledgement, match="cannot be acknowledged earlier"):
        store.acknowledge("al-c", datetime(2025, 1, 14, tzinfo=UTC))


def test_the_writer_batches_and_is_idempotent(backend: Backend, history_url: str, store: HistoryStore) -> None:
    ts, als, cs = fixture_history()
    counts = write_replay_history(history_url, ts, als, cs, batch_size=4)
    assert (counts.transitions, counts.alerts, counts.contacts) == (len(ts), len(als), len(cs))
    # Flushes at 4, 8, 12 transitions; 3 + 3 alerts; 4 contacts; the last 2 contacts on close.
    assert counts.batches == 6
    before = backend.dump(store)
    write_replay_history(history_url, ts, als, cs, batch_size=1000)
    assert backend.dump(store)[:2] == before[:2]
    with HistoryWriter(history_url, batch_size=100) as writer:
        writer.add_transitions(ts)
        assert writer.pending == len(ts)  # below the batch size: nothing written yet
    assert writer.pending == 0 and writer.counts.batches == 1


def test_a_database_without_tables_is_not_ready(empty_history_url: str) -> None:
    with pytest.raises(SchemaNotReady, match=r"has no Leadflow tables.*leadflow db upgrade"):
        open_history_store(empty_history_url)


def test_an_unreachable_database_raises_storage_unavailable(backend: Backend) -> None:
    with pytest.raises(StorageUnavailable, match="is unavailable"):
        open_history_store(backend.unreachable_url)


def test_writing_to_a_database_that_went_away_raises_storage_unavailable(backend: Backend, history_url: str) -> None:
    ts, als, cs = fixture_history()
    away = backend.unreachable_url
    with open_history_store(away, check_schema=False) as store, pytest.raises(StorageUnavailable) as caught:
        store.write_batch(ts, als, cs)
    assert "is unavailable" in str(caught.value)
    # The batch can be written again, whole, once the database is back.
    with open_history_store(history_url) as store:
        store.write_batch(ts, als, cs)
        store.write_batch(ts, als, cs)
        assert backend.counts(store) == (len(ts), len(als), len(cs))

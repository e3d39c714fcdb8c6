"""Migrations: from an empty database to head, and 0001 -> head, 0002 -> head on databases with data."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from pipeline.storage import SqlHistoryStore, head_revision, upgrade_database
from pipeline.storage.sql.engine import open_engine
from pipeline.storage.sql.tables import Base

from .conftest import fixture_history

pytestmark = pytest.mark.integration


def test_upgrade_from_empty_creates_the_mapped_schema(empty_db: str) -> None:
    assert upgrade_database(empty_db) == (None, head_revision())
    assert upgrade_database(empty_db) == (head_revision(), head_revision())  # idempotent
    engine = open_engine(empty_db)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert differences == [], "the migrations and pipeline/storage/sql/tables.py disagree"


def test_upgrade_in_place_keeps_the_data(empty_db: str) -> None:
    assert upgrade_database(empty_db, "0001") == (None, "0001")
    engine = open_engine(empty_db)
    with engine.begin() as connection:  # a revision-0001 database holding an alert and a transition
        connection.execute(text(
            "INSERT INTO alerts (alert_id, type, contact_id, stage, score, occurred_at, respond_by, reasons, model) "
            "VALUES ('al-old', 'became_hot', 'A', 'lead', 50, :at, :by, '[]', 'default@1')"
        ), {"at": datetime(2025, 1, 2, tzinfo=UTC), "by": datetime(2025, 1, 2, 1, tzinfo=UTC)})
        connection.execute(text(
            'INSERT INTO transitions (transition_id, contact_id, kind, "from", "to", direction, reason, skipped, '
            "occurred_at, stage, temperature, score, model) VALUES ('t-old', 'A', 'stage', 'niche', 'lead', "
            "'advance', 'signed_up', '[]', :at, 'lead', 'cold', 10, 'default@1')"
        ), {"at": datetime(2025, 1, 1, tzinfo=UTC)})
    engine.dispose()
    assert upgrade_database(empty_db) == ("0001", head_revision())
    with SqlHistoryStore(empty_db) as store:
        history = store.contact_timeline("A")
        assert history is not None and [t.transition_id for t in history.transitions] == ["t-old"]
        assert history.alerts[0].acknowledged_at is None
        assert store.acknowledge("al-old", datetime(2025, 1, 2, 0, 10, tzinfo=UTC)).newly_acknowledged
        store.write_batch(*fixture_history())  # the upgraded schema takes new history
        history = store.contact_timeline("A")
        assert history is not None and len(history.transitions) == 6


def test_upgrade_from_0002_adds_merged_into_and_widens_from_to(empty_db: str) -> None:
    assert upgrade_database(empty_db, "0002") == (None, "0002")
    engine = open_engine(empty_db)
    with engine.begin() as connection:  # a revision-0002 database holding a contact and a transition
        connection.execute(text(
            "INSERT INTO contacts (contact_id, stage, temperature, score, stage_entered_at, last_event_at, "
            "core_orders, referrals_converted, events_applied, first_touch_source, model, updated_at) VALUES "
            "('A', 'lead', 'cold', 10, :at, :at, 0, 0, 1, 'website', 'default@1', :at)"
        ), {"at": datetime(2025, 1, 1, tzinfo=UTC)})
        connection.execute(text(
            'INSERT INTO transitions (transition_id, contact_id, kind, "from", "to", direction, reason, skipped, '
            "occurred_at, stage, temperature, score, model) VALUES ('t-old', 'A', 'stage', 'niche', 'lead', "
            "'advance', 'signed_up', '[]', :at, 'lead', 'cold', 10, 'default@1')"
        ), {"at": datetime(2025, 1, 1, tzinfo=UTC)})
    engine.dispose()
    assert upgrade_database(empty_db) == ("0002", head_revision())
    visitor = "anon:" + "v" * 128
    with SqlHistoryStore(empty_db) as store:
        history = store.contact_timeline("A")
        assert history is not None and history.contact is not None and history.contact.merged_into is None
        assert [t.transition_id for t in history.transitions] == ["t-old"]
        old = history.transitions[0]
        link = msgspec.structs.replace(old, transition_id="t-link", kind="identity", from_=visitor, to="A")
        sealed = msgspec.structs.replace(history.contact, contact_id=visitor, merged_into="A")
        store.write_batch([link], [], [sealed])  # an anon:<128> id fits (64 characters before 0003)
        history = store.contact_timeline("A")
        assert history is not None and [m.contact_id for m in history.merged] == [visitor]
        assert history.transitions[-1].from_ == visitor

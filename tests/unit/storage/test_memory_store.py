"""What only the in-memory adapter has: private and named stores, creation by upgrade, an outage switch.

The behaviour it shares with the SQL adapter is checked by the contract suite
(tests/integration/storage/test_contract.py, which runs on memory too).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from pipeline.state_machine.records import ContactSnapshot, FirstTouch, Transition
from pipeline.storage import (
    MemoryHistoryStore,
    SchemaNotReady,
    StorageUnavailable,
    head_revision,
    open_history_store,
    upgrade_database,
)
from pipeline.storage.memory.store import drop_memory_database, set_memory_database_available

MOVE = Transition("t1", "c1", "stage", "niche", "lead", "advance", "signed_up", (), "e1",
                  "2025-03-01T19:00:00+07:00", "lead", "cold", 10.0, "default@1")


@pytest.fixture
def named() -> Iterator[str]:
    url = f"memory://unit-{uuid.uuid4().hex[:8]}"
    yield url
    drop_memory_database(url)


def test_private_stores_share_nothing() -> None:
    with open_history_store("memory://") as one, open_history_store("memory://") as other:
        one.write_batch([MOVE], [], [])
        assert one.contact_timeline("c1") is not None and other.contact_timeline("c1") is None


def test_a_named_store_is_created_by_upgrade_and_shared(named: str) -> None:
    with pytest.raises(SchemaNotReady, match="leadflow db upgrade"):
        open_history_store(named)
    assert upgrade_database(named) == (None, head_revision())
    assert upgrade_database(named) == (head_revision(), head_revision())
    with open_history_store(named) as writer:
        assert isinstance(writer, MemoryHistoryStore)
        writer.write_batch([MOVE], [], [])
    with open_history_store(named) as reader:
        history = reader.contact_timeline("c1")
    # Times come back in the engine's form, as from a database.
    assert history is not None and history.transitions[0].occurred_at == "2025-03-01T12:00:00Z"


def test_an_outage_refuses_everything_and_keeps_the_history(named: str) -> None:
    upgrade_database(named)
    store = open_history_store(named)
    store.write_batch([MOVE], [], [])
    set_memory_database_available(named, False)
    with pytest.raises(StorageUnavailable, match="is unavailable"):
        store.write_batch([MOVE], [], [])
    with pytest.raises(StorageUnavailable):
        store.contact_timeline("c1")
    set_memory_database_available(named, True)
    history = store.contact_timeline("c1")
    assert history is not None and len(history.transitions) == 1


def test_a_bad_time_writes_nothing_of_the_batch() -> None:
    store = open_history_store("memory://")
    late = ContactSnapshot("c1", "lead", "cold", 1.0, "not a time", None, 0, 0, 1, FirstTouch(), None, "default@1")
    with pytest.raises(ValueError):
        store.write_batch([MOVE], [], [late])
    assert store.contact_timeline("c1") is None

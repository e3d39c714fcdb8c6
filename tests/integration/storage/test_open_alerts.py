"""``HistoryStore.open_alerts``: the sales queue of the console, the same on every backend."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from pipeline.storage import HistoryStore

from .conftest import fixture_history

pytestmark = pytest.mark.integration


def test_open_alerts_are_the_unacknowledged_ones_soonest_deadline_first(store: HistoryStore) -> None:
    ts, als, cs = fixture_history()
    base = als[0]
    later = msgspec.structs.replace(base, alert_id="al-later", respond_by="2030-01-01T02:00:00Z")
    sooner = msgspec.structs.replace(base, alert_id="al-sooner", respond_by="2030-01-01T01:00:00Z")
    store.write_batch(ts, [*als, later, sooner], cs)
    before = [a.alert.alert_id for a in store.open_alerts()]
    assert set(before) == {a.alert_id for a in als} | {"al-later", "al-sooner"}
    assert before.index("al-sooner") < before.index("al-later")
    deadlines = [a.alert.respond_by for a in store.open_alerts()]
    assert deadlines == sorted(deadlines)
    store.acknowledge("al-sooner", datetime(2030, 1, 1, tzinfo=UTC))
    after = store.open_alerts()
    assert "al-sooner" not in {a.alert.alert_id for a in after}
    assert all(a.acknowledged_at is None for a in after)
    assert len(store.open_alerts(limit=1)) == 1

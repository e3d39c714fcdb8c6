"""order_completed's optional promotion properties (issue 14): discount and coupon.

Bad input is a dead letter naming the JSON path; the fast path and the exact rules agree.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from pipeline.contracts import DeadLetter, decode_event
from pipeline.contracts.fastpath import fast_event
from pipeline.state_machine.events import Event

from .conftest import RECEIVED_AT

_ISO = "$.properties.currency: must be an ISO 4217 code: three upper-case letters A-Z"


def _order(**props: Any) -> bytes:
    properties = {"order_id": "o-1", "amount": 450_000, "currency": "VND", "tier": "entry", **props}
    envelope = {"event_id": "p-1", "event_type": "order_completed", "source": "purchase", "contact_id": "c-1",
                "occurred_at": "2026-03-01T10:00:00Z", "properties": properties}
    return json.dumps(envelope).encode()


@pytest.mark.parametrize(
    "props",
    [{"discount": 50_000}, {"coupon": "SPRING10"}, {"discount": 0, "coupon": ""}, {"discount": 450_000},
     {"discount": 12.5, "coupon": "X"}],
)
def test_promotions_are_accepted_and_kept(props: dict[str, Any]) -> None:
    event = decode_event(_order(**props), family="purchase", received_at=RECEIVED_AT)
    assert isinstance(event, Event)
    for key, value in props.items():
        assert event.properties[key] == value
    assert fast_event(_order(**props), "purchase", RECEIVED_AT) == event


@pytest.mark.parametrize(
    ("props", "detail"),
    [
        ({"discount": -1}, "$.properties.discount: must be a number >= 0 (got -1)"),
        ({"discount": "10%"}, '$.properties.discount: must be a number >= 0 (got "10%")'),
        ({"discount": True}, "$.properties.discount: must be a number >= 0 (got true)"),
        ({"discount": 500_000}, "$.properties.discount: must be at most amount (450000) (got 500000)"),
        ({"coupon": 7}, "$.properties.coupon: must be a string (got 7)"),
        ({"currency": "vnd"}, f'{_ISO} (got "vnd")'),
        ({"currency": "VNDX"}, f'{_ISO} (got "VNDX")'),
    ],
)
def test_bad_promotions_and_currencies_are_dead_letters_with_their_path(props: dict[str, Any], detail: str) -> None:
    raw = _order(**props)
    dead = decode_event(raw, family="purchase", received_at=RECEIVED_AT)
    assert isinstance(dead, DeadLetter)
    assert (dead.error_code, dead.error_detail) == ("schema_violation", detail)
    assert fast_event(raw, "purchase", RECEIVED_AT) is None

"""Helpers for the lifecycle engine tests: build ``Event`` records directly and drive contacts.

The engine's input is an already-validated :class:`~pipeline.state_machine.events.Event`; these
tests build them by hand (never through ``pipeline.contracts``) so they exercise the pure core only.

The helpers are handed to tests as fixtures (test modules never import ``conftest``):

- ``model`` / ``b2b_model``: the built-in models.
- ``event``: :func:`make_event`, a builder with sensible defaults (source from the event family,
  ``identified`` from the contact key, a fresh event id); ``core_order``: :func:`core_order`.
- ``at``: :func:`at`, a time as an offset from ``T0`` (2025-03-01T09:00:00Z), in microseconds.
- ``run``: a new :class:`Run` on the default model; ``run_with(model)`` for another model.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

try:
    import pipeline  # noqa: F401  (installed with `pip install -e .`, as `make test` does)
except ModuleNotFoundError:  # a bare `pytest` run from a checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from pipeline.state_machine import (
    EVENT_TYPES,
    REFERRAL_CONVERTED,
    Alert,
    ContactState,
    Decision,
    Event,
    Model,
    Transition,
    builtin_model,
    decide,
    expire,
)
from pipeline.state_machine.clock import MICROS_PER_SECOND, parse_rfc3339

T0 = parse_rfc3339("2025-03-01T09:00:00Z")
MICROS_PER_MINUTE = 60 * MICROS_PER_SECOND
MICROS_PER_HOUR = 60 * MICROS_PER_MINUTE
MICROS_PER_DAY = 24 * MICROS_PER_HOUR

#: Event family (``source``) of every input event type.
FAMILY: dict[str, str] = {t: family for family, types in EVENT_TYPES.items() for t in types}
FAMILY[REFERRAL_CONVERTED] = "purchase"

_ids: Iterator[int] = itertools.count(1)


def at(days: float = 0, hours: float = 0, minutes: float = 0, seconds: float = 0, micros: int = 0) -> int:
    """``T0`` plus an offset, in microseconds (fractions are rounded to the microsecond)."""
    offset = days * MICROS_PER_DAY + hours * MICROS_PER_HOUR + minutes * MICROS_PER_MINUTE
    return T0 + round(offset + seconds * MICROS_PER_SECOND) + micros


def make_event(
    event_type: str,
    when: int = T0,
    contact: str = "c1",
    *,
    event_id: str | None = None,
    source: str | None = None,
    identified: bool | None = None,
    referred_by: str | None = None,
    **properties: Any,
) -> Event:
    """An ``Event`` as the contracts layer would build it.

    ``contact`` is the state key (``anon:<id>`` for an anonymous visitor); ``identified`` defaults
    to "not anonymous"; ``event_id`` defaults to a fresh, never repeated id.
    """
    return Event(
        event_id=event_id if event_id is not None else f"e{next(_ids):06d}",
        event_type=event_type,
        source=source if source is not None else FAMILY[event_type],
        contact=contact,
        occurred_at=when,
        identified=identified if identified is not None else not contact.startswith("anon:"),
        properties=dict(properties),
        referred_by=referred_by,
    )


def core_order(when: int, order_id: str, contact: str = "c1", **kw: Any) -> Event:
    """A completed order of the main product (tier ``core``)."""
    return make_event("order_completed", when, contact, order_id=order_id, tier="core", **kw)


class Run:
    """Drives contacts with ``decide`` and ``expire`` and records every output, in order.

    Referral credit returned by a decision is applied to the referrer at once (as the processor does).
    """

    def __init__(self, model: Model) -> None:
        self.model = model
        self.states: dict[str, ContactState] = {}
        self.transitions: list[Transition] = []
        self.alerts: list[Alert] = []
        self.referrals: list[Event] = []
        self.fed = 0  # events fed by the test
        self.applied = 0  # ... of which applied
        self.duplicates = 0  # ... of which recognised as duplicates
        self.credits_applied = 0  # referral credit events applied to referrers

    def feed(self, *events: Event) -> Decision:
        """Apply events in order; return the decision of the last one (referral credit included)."""
        decision: Decision | None = None
        for event in events:
            self.fed += 1
            decision = self._apply(event)
            if decision.duplicate:
                self.duplicates += 1
            else:
                self.applied += 1
        assert decision is not None
        return decision

    def _apply(self, event: Event) -> Decision:
        decision = decide(self.states.get(event.contact), event, self.model)
        if decision.duplicate:
            return decision
        self.states[event.contact] = decision.state
        self.transitions.extend(decision.transitions)
        self.alerts.extend(decision.alerts)
        for credit in decision.referrals:
            self.referrals.append(credit)
            if not self._apply(credit).duplicate:
                self.credits_applied += 1
        return decision

    def expire(self, now: int, contact: str | None = None) -> list[Transition]:
        """Fire what is due by ``now`` (for one contact, or all in key order); returns the moves."""
        fired: list[Transition] = []
        for key in [contact] if contact is not None else sorted(self.states):
            decision = expire(self.states[key], now, self.model)
            self.states[key] = decision.state
            fired.extend(decision.transitions)
            self.alerts.extend(decision.alerts)  # response_overdue escalations
        self.transitions.extend(fired)
        return fired

    # --- views ---------------------------------------------------------------------------------

    def state(self, contact: str = "c1") -> ContactState:
        return self.states[contact]

    def stage(self, contact: str = "c1") -> str:
        return self.model.stages[self.states[contact].stage]

    def temperature(self, contact: str = "c1") -> str:
        return self.model.bands[self.states[contact].band].name

    def moves(self, kind: str | None = None, contact: str | None = None) -> list[tuple[str, str, str]]:
        """``(from, to, reason)`` of the recorded transitions, optionally of one kind / contact."""
        return [
            (t.from_, t.to, t.reason)
            for t in self.transitions
            if (kind is None or t.kind == kind) and (contact is None or t.contact_id == contact)
        ]


@pytest.fixture(scope="session")
def model() -> Model:
    return builtin_model("default")


@pytest.fixture(scope="session")
def b2b_model() -> Model:
    return builtin_model("b2b")


@pytest.fixture(scope="session")
def event() -> Callable[..., Event]:
    return make_event


@pytest.fixture
def run(model: Model) -> Run:
    return Run(model)


@pytest.fixture(name="core_order", scope="session")
def core_order_fixture() -> Callable[..., Event]:
    return core_order


@pytest.fixture(name="at", scope="session")
def at_fixture() -> Callable[..., int]:
    return at


@pytest.fixture(scope="session")
def run_with() -> Callable[[Model], Run]:
    return Run

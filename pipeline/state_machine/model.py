"""The compiled lifecycle model: stages, transitions, cooling rules, scoring and bands as data.

A model is written as a TOML file (``models/default.toml``) and compiled by
:mod:`pipeline.state_machine.loader` into the frozen types below. The engine reads only these
types; it names no stage, no band and no reason code of its own.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: State measures a rule's ``require`` may test (computed by the engine from contact state).
#: ``bant`` counts the BANT criteria sales confirmed (0-4, from ``lead_qualified`` events);
#: ``budget``, ``authority``, ``need``, ``timeline`` are each true once confirmed (false otherwise).
MEASURES: tuple[str, ...] = (
    "core_orders", "core_order_span_days", "referrals_converted", "score",
    "bant", "budget", "authority", "need", "timeline",
)
#: The measures that hold a BANT criterion (their operands are true/false).
BANT_MEASURES: tuple[str, ...] = ("budget", "authority", "need", "timeline")

#: Clocks a time-driven cooling rule may count from (``since = ...``).
CLOCKS: tuple[str, ...] = ("last_engagement", "last_core_order", "last_referral", "stage_entered")

#: Value measures a segment's ``enter`` / ``stay`` may test (kept per contact when the model has
#: ``[segments]``; see :mod:`.segments`). Money is in the model's currency, net of refunds.
SEGMENT_MEASURES: tuple[str, ...] = (
    "revenue", "recent_revenue", "orders", "recent_orders", "promo_orders", "promo_share",
    "days_since_last_order", "negative_signals", "orders_since_negative",
)
#: Segment measures that grow or shrink with time alone (a segment deadline watches them).
TIMED_SEGMENT_MEASURES: tuple[str, ...] = (
    "recent_revenue", "recent_orders", "days_since_last_order", "negative_signals",
)

#: Comparison operators of a condition, e.g. ``rating = { le = 2 }``.
OPERATORS: tuple[str, ...] = ("eq", "ne", "lt", "le", "gt", "ge", "in")


@dataclass(frozen=True, slots=True)
class Comparison:
    """One test of a value: ``value <op> operand``. A missing value never matches."""

    key: str
    op: str
    operand: Any
    #: ``check(value, operand)``: the operator as a function (hot path; see :func:`all_match`).
    check: Callable[[Any, Any], Any] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "check", _CHECKS[self.op])

    def matches(self, value: Any) -> bool:
        if value is None:
            return False
        op = self.op
        try:
            if op == "eq":
                return bool(value == self.operand)
            if op == "ne":
                return bool(value != self.operand)
            if op == "in":
                return value in self.operand
            if op == "lt":
                return bool(value < self.operand)
            if op == "le":
                return bool(value <= self.operand)
            if op == "gt":
                return bool(value > self.operand)
            return bool(value >= self.operand)
        except TypeError:  # e.g. a string property compared with a number: no match
            return False


def _contains(value: Any, operand: Any) -> bool:
    return value in operand


_CHECKS: dict[str, Callable[[Any, Any], Any]] = {
    "eq": operator.eq, "ne": operator.ne, "lt": operator.lt, "le": operator.le,
    "gt": operator.gt, "ge": operator.ge, "in": _contains,
}


def all_match(tests: tuple[Comparison, ...], values: Mapping[str, Any]) -> bool:
    """True when every comparison holds on ``values`` (an empty tuple always holds).

    The fast loop calls each test's operator function; a comparison that raises (a string
    compared with a number) is decided by :func:`all_match_exact`, which says no match for it."""
    try:
        for test in tests:
            value = values.get(test.key)
            if value is None or not test.check(value, test.operand):
                return False
        return True
    except TypeError:
        return all_match_exact(tests, values)


def all_match_exact(tests: tuple[Comparison, ...], values: Mapping[str, Any]) -> bool:
    """:func:`all_match` one :meth:`Comparison.matches` at a time (the reference)."""
    for test in tests:
        value = values.get(test.key)
        if test.op == "eq":  # the common case, inline
            if value is None or value != test.operand:
                return False
        elif not test.matches(value):
            return False
    return True


@dataclass(frozen=True, slots=True)
class Advance:
    """Move a contact up to ``to`` (from any earlier stage) when the trigger and guards hold.

    The trigger is an event (``on``, optionally narrowed by ``where`` on its properties) or the
    contact's temperature being at least ``on_temperature`` after an event.
    """

    to: int
    reason: str
    on: frozenset[str]
    on_temperature: int | None
    where: tuple[Comparison, ...]
    require: tuple[Comparison, ...]
    min_stage: int
    identified_only: bool
    entry: str


@dataclass(frozen=True, slots=True)
class Regress:
    """Move a contact down from ``from_stage`` to ``to``: on an event, or after a quiet period."""

    from_stage: int
    to: int
    reason: str
    on: frozenset[str]
    where: tuple[Comparison, ...]
    require: tuple[Comparison, ...]
    after: int | None  # microseconds of quiet, for a time-driven rule
    since: str | None  # one of CLOCKS, for a time-driven rule
    entry: str


@dataclass(frozen=True, slots=True)
class Band:
    """A temperature band. ``enter`` is reached from below; the band is left below ``leave_below``."""

    name: str
    enter: float
    leave_below: float
    enter_reason: str
    leave_reason: str


@dataclass(frozen=True, slots=True)
class InstantBand:
    """Events that put a contact into ``band`` at once: the score is raised to the band's entry."""

    event_types: frozenset[str]
    band: int
    reason: str


@dataclass(frozen=True, slots=True)
class PointsRule:
    """Points for an event type when ``where`` holds; the first matching rule wins."""

    event_type: str
    where: tuple[Comparison, ...]
    points: float


@dataclass(frozen=True, slots=True)
class Segment:
    """A value segment: entered when every ``enter`` test holds, kept while every ``stay`` test
    holds (hysteresis: ``stay`` is ``enter`` loosened). ``rank``: position in the declaration
    (most valuable first), which says whether a move is an advance or a regression."""

    name: str
    enter: tuple[Comparison, ...]
    stay: tuple[Comparison, ...]
    enter_reason: str
    leave_reason: str
    rank: int
    entry: str
    # ``enter`` and ``stay`` split by whether elapsed time alone changes the measure a test reads
    # (TIMED_SEGMENT_MEASURES): between two candidate times of a segment deadline only the timed
    # tests can change their answer.
    enter_static: tuple[Comparison, ...] = field(default=(), init=False, compare=False, repr=False)
    enter_timed: tuple[Comparison, ...] = field(default=(), init=False, compare=False, repr=False)
    stay_static: tuple[Comparison, ...] = field(default=(), init=False, compare=False, repr=False)
    stay_timed: tuple[Comparison, ...] = field(default=(), init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name, tests in (("enter", self.enter), ("stay", self.stay)):
            object.__setattr__(self, f"{name}_static", tuple(t for t in tests if t.key not in TIMED_SEGMENT_MEASURES))
            object.__setattr__(self, f"{name}_timed", tuple(t for t in tests if t.key in TIMED_SEGMENT_MEASURES))


@dataclass(frozen=True, slots=True)
class NegativeSignal:
    """Event types that count as a negative signal when ``where`` holds on their properties."""

    on: frozenset[str]
    where: tuple[Comparison, ...]


@dataclass(frozen=True, slots=True)
class Segments:
    """The value-segment axis (``[segments]``): segments in evaluation ``order`` (the first whose
    ``enter`` holds wins), the ``fallback`` segment of a contact in none of them, and the inputs."""

    order: tuple[Segment, ...]
    fallback: str
    fallback_rank: int
    currency: str
    recent_window: int  # microseconds: recent_revenue and recent_orders
    signal_window: int  # microseconds: negative_signals
    signals: tuple[NegativeSignal, ...]
    signal_memory: int  # negative-signal times remembered per contact
    signal_types: frozenset[str] = frozenset()
    # Every day count a segment compares days_since_last_order with (a deadline candidate each).
    day_thresholds: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "signal_types", frozenset(t for s in self.signals for t in s.on))
        thresholds: set[float] = set()
        for segment in self.order:
            for test in (*segment.enter, *segment.stay):
                if test.key == "days_since_last_order":
                    operands = test.operand if test.op == "in" else (test.operand,)
                    thresholds.update(float(v) for v in operands if type(v) in (int, float))
        object.__setattr__(self, "day_thresholds", tuple(sorted(thresholds)))

    def name_of(self, index: int) -> str:
        """The segment at ``index`` in ``order``; -1 is the fallback."""
        return self.fallback if index < 0 else self.order[index].name

    def rank_of(self, index: int) -> int:
        return self.fallback_rank if index < 0 else self.order[index].rank

    def names(self) -> tuple[str, ...]:
        """Every segment name, most valuable first (the fallback in its declared place)."""
        ranked = sorted([(s.rank, s.name) for s in self.order] + [(self.fallback_rank, self.fallback)])
        return tuple(name for _, name in ranked)


@dataclass(frozen=True, slots=True)
class Model:
    """A validated lifecycle model, indexed for the engine's hot path."""

    name: str
    version: int
    description: str
    stages: tuple[str, ...]
    bands: tuple[Band, ...]
    half_life: int  # microseconds
    advances: tuple[Advance, ...]
    regressions: tuple[Regress, ...]
    instant: tuple[InstantBand, ...]
    points: Mapping[str, tuple[PointsRule, ...]]
    non_engagement: frozenset[str]
    order_completed: str
    order_refunded: str
    counted_tier: str
    alert_band: int
    alert_identified_only: bool
    respond_within: int  # microseconds
    alert_max_reasons: int
    dedup_window: int
    order_memory: int
    source_path: str = ""
    # Identity merging ([identity]): reason codes of the moves a merge causes, and of a bare link.
    merge_reason: str = "merged_anonymous_history"
    link_reason: str = "linked_anonymous_id"
    # Speed to lead ([alerts] escalate_overdue): publish response_overdue at respond_by when no
    # lead_contacted answered the became_hot alert.
    escalate_overdue: bool = True
    # Value segments ([segments], issue 14): None when the model declares none.
    segments: Segments | None = None
    # Indexes, derived in __post_init__.
    advances_by_event: Mapping[str, tuple[Advance, ...]] = field(default_factory=dict, compare=False)
    temperature_advances: tuple[Advance, ...] = field(default=(), compare=False)
    advance_candidates: Mapping[str, tuple[Advance, ...]] = field(default_factory=dict, compare=False)
    # Highest stage any advance candidate of an event type can reach (skip the rules above it).
    advance_ceiling: Mapping[str, int] = field(default_factory=dict, compare=False)
    regress_by_stage_event: Mapping[tuple[int, str], tuple[Regress, ...]] = field(
        default_factory=dict, compare=False
    )
    timed_by_stage: Mapping[int, tuple[Regress, ...]] = field(default_factory=dict, compare=False)
    instant_by_event: Mapping[str, InstantBand] = field(default_factory=dict, compare=False)
    flat_points: Mapping[str, float] = field(default_factory=dict, compare=False)  # types without `where`
    #: How transitions name the model: ``name@version``.
    label: str = field(default="", init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "label", f"{self.name}@{self.version}")
        by_event: dict[str, list[Advance]] = {}
        for rule in self.advances:
            for event_type in rule.on:
                by_event.setdefault(event_type, []).append(rule)
        regress: dict[tuple[int, str], list[Regress]] = {}
        timed: dict[int, list[Regress]] = {}
        for down in self.regressions:
            if down.after is not None:
                timed.setdefault(down.from_stage, []).append(down)
            for event_type in down.on:
                regress.setdefault((down.from_stage, event_type), []).append(down)
        instant: dict[str, InstantBand] = {}
        for instant_rule in self.instant:
            for event_type in instant_rule.event_types:
                instant.setdefault(event_type, instant_rule)
        object.__setattr__(self, "advances_by_event", {k: tuple(v) for k, v in by_event.items()})
        object.__setattr__(
            self, "temperature_advances", tuple(r for r in self.advances if r.on_temperature is not None)
        )
        object.__setattr__(
            self,
            "advance_candidates",
            {t: tuple(by_event.get(t, ())) + self.temperature_advances for t in by_event.keys() | self.points.keys()},
        )
        object.__setattr__(
            self,
            "advance_ceiling",
            {t: max((rule.to for rule in rules), default=-1) for t, rules in self.advance_candidates.items()},
        )
        object.__setattr__(self, "regress_by_stage_event", {k: tuple(v) for k, v in regress.items()})
        object.__setattr__(self, "timed_by_stage", {k: tuple(v) for k, v in timed.items()})
        object.__setattr__(self, "instant_by_event", instant)
        object.__setattr__(
            self,
            "flat_points",
            {t: rules[0].points for t, rules in self.points.items() if len(rules) == 1 and not rules[0].where},
        )


    def stage_index(self, name: str) -> int:
        return self.stages.index(name)

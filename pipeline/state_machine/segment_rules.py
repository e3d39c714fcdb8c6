"""Load and check a model's ``[segments]`` table into :class:`~.model.Segments` (issue 14).

Checks, each a :class:`~.errors.ModelError` naming the file and the entry: known keys and
measures; numbers where a measure is compared; a currency of three upper-case letters; exactly one
fallback segment; ``order`` placing every other segment exactly once (a segment with no place in
the order would overlap the others ambiguously); no segment *unreachable* (its ``enter`` cannot
hold, or every contact meeting it already meets the ``enter`` of a segment evaluated earlier); and
hysteresis the right way round (every contact meeting ``enter`` also meets ``stay``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

from pipeline.state_machine.clock import days
from pipeline.state_machine.errors import ModelError
from pipeline.state_machine.model import SEGMENT_MEASURES, Comparison, NegativeSignal, Segment, Segments


class Reading(Protocol):
    """What the loader's table reader offers (it is handed in: this module never imports the loader)."""

    entry: str
    table: dict[str, Any]

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any: ...
    def fail(self, problem: str) -> ModelError: ...
    def done(self) -> None: ...


class Building(Protocol):
    def reader(self, entry: str, table: Any) -> Any: ...
    def claim_reason(self, reader: Any, reason: str) -> str: ...
    def event_types(self, reader: Any, key: str, default: Any = ...) -> frozenset[str]: ...


#: The loader's condition parser: (reader, key, allowed measures or None) -> comparisons.
Comparisons = Callable[[Any, str, tuple[str, ...] | None], tuple[Comparison, ...]]

#: measure -> (low, low included, high, high included)
_Box = dict[str, tuple[float, bool, float, bool]]


def build_segments(builder: Building, top: Reading, _comparisons: Comparisons) -> Segments | None:
    """The ``[segments]`` table of a model file, or None when it declares none."""
    raw = top.get("segments", dict, None)
    if raw is None:
        return None
    table: Reading = builder.reader("[segments]", raw)
    currency = table.get("currency", str)
    if len(currency) != 3 or not (currency.isascii() and currency.isalpha() and currency.isupper()):
        raise table.fail(f"currency must be an ISO 4217 code, three upper-case letters (got {currency!r})")
    recent_days = table.get("recent_days", (int, float))
    signal_days = table.get("signal_days", (int, float))
    if recent_days <= 0 or signal_days <= 0:
        raise table.fail("recent_days and signal_days must be positive")
    signal_memory = table.get("signal_memory", int, 8)
    if signal_memory < 1:
        raise table.fail("signal_memory must be at least 1")
    order_names = table.get("order", list)

    declared: list[Segment] = []
    fallback: tuple[str, int] | None = None
    for i, item in enumerate(table.get("segment", list)):
        r: Reading = builder.reader(f"segments.segment[{i}]", item)
        name = r.get("name", str)
        r.entry = f"segments.segment[{i}] ({name!r})"
        if any(s.name == name for s in declared) or (fallback is not None and fallback[0] == name):
            raise r.fail(f"duplicate segment name {name!r}")
        if r.get("fallback", bool, False):
            if fallback is not None:
                raise r.fail(f"only one segment can be the fallback (already {fallback[0]!r})")
            fallback = (name, i)
            r.done()
            continue
        enter = _comparisons(r, "enter", SEGMENT_MEASURES)
        if not enter:
            raise r.fail("enter: give at least one condition (a segment without one takes every contact)")
        stay = _comparisons(r, "stay", SEGMENT_MEASURES) if "stay" in r.table else enter
        for key, tests in (("enter", enter), ("stay", stay)):
            for test in tests:
                values = test.operand if test.op == "in" else (test.operand,)
                if not all(type(v) in (int, float) for v in values):
                    raise r.fail(f"{key}.{test.key}: compare with a number (got {test.operand!r})")
        enter_reason = builder.claim_reason(r, r.get("enter_reason", str))
        leave_reason = builder.claim_reason(r, r.get("leave_reason", str))
        r.done()
        declared.append(Segment(name, enter, stay, enter_reason, leave_reason, i, r.entry))
    if fallback is None:
        raise table.fail("declare one segment with fallback = true (where a contact in no other segment is)")

    by_name = {s.name: s for s in declared}
    for name in order_names:
        if name == fallback[0]:
            raise table.fail(f"order: the fallback {name!r} is not evaluated; leave it out")
        if name not in by_name:
            raise table.fail(f"order: unknown segment {name!r}; segments are: {', '.join(by_name)}")
    for segment in declared:
        placed = order_names.count(segment.name)
        if placed != 1:
            problem = "listed twice in" if placed else "missing from"
            raise builder.reader(segment.entry, {}).fail(
                f"overlaps the other segments ambiguously: {problem} [segments] order (the order of evaluation)"
            )
    order = tuple(by_name[name] for name in order_names)
    _check_reachable(builder, order)

    signals = []
    for i, item in enumerate(table.get("negative", list, [])):
        r = builder.reader(f"segments.negative[{i}]", item)
        signals.append(NegativeSignal(builder.event_types(r, "on"), _comparisons(r, "where", None)))
        r.done()
    table.done()
    return Segments(
        order=order,
        fallback=fallback[0],
        fallback_rank=fallback[1],
        currency=currency,
        recent_window=days(recent_days),
        signal_window=days(signal_days),
        signals=tuple(signals),
        signal_memory=signal_memory,
    )


def _check_reachable(builder: Building, order: tuple[Segment, ...]) -> None:
    for index, segment in enumerate(order):
        fail = builder.reader(segment.entry, {}).fail
        enter = _box(segment.enter)
        if enter is not None and any(_empty(bounds) for bounds in enter.values()):
            raise fail("unreachable: its enter conditions can never all hold")
        for earlier in order[:index]:
            if enter is not None and _within(enter, _box(earlier.enter)):
                raise fail(
                    f"unreachable: every contact meeting its enter conditions already meets those of "
                    f"{earlier.name!r}, which is evaluated first"
                )
        if enter is not None and not _within(enter, _box(segment.stay)):
            raise fail("stay is stricter than enter: a contact could enter and leave at once; loosen stay")


def _box(tests: tuple[Comparison, ...]) -> _Box | None:
    """The intervals ``tests`` allow per measure; None when a test is not an interval (ne)."""
    box: _Box = {}
    for test in tests:
        lo, lo_in, hi, hi_in = box.get(test.key, (-math.inf, False, math.inf, False))
        op, value = test.op, test.operand
        if op == "in":
            op, value = "between", (min(value), max(value))
        if op == "ne":
            return None
        if op in ("eq", "ge", "gt", "between"):
            low = value[0] if op == "between" else value
            if low > lo or (low == lo and op == "gt"):
                lo, lo_in = low, op != "gt"
        if op in ("eq", "le", "lt", "between"):
            high = value[1] if op == "between" else value
            if high < hi or (high == hi and op == "lt"):
                hi, hi_in = high, op != "lt"
        box[test.key] = (lo, lo_in, hi, hi_in)
    return box


def _empty(bounds: tuple[float, bool, float, bool]) -> bool:
    lo, lo_in, hi, hi_in = bounds
    return lo > hi or (lo == hi and not (lo_in and hi_in))


def _within(inner: _Box, outer: _Box | None) -> bool:
    """Whether every point of ``inner`` lies in ``outer`` (False when ``outer`` is not a box)."""
    if outer is None:
        return False
    for key, (lo, lo_in, hi, hi_in) in outer.items():
        ilo, ilo_in, ihi, ihi_in = inner.get(key, (-math.inf, False, math.inf, False))
        if ilo < lo or (ilo == lo and ilo_in and not lo_in):
            return False
        if ihi > hi or (ihi == hi and ihi_in and not hi_in):
            return False
    return True

"""Load a lifecycle model file (TOML) and validate it into a :class:`~.model.Model`.

Every problem is a :class:`~.errors.ModelError` naming the file, the entry (for example
``advances[3] (reason "signed_up")``) and what to change. Checks: known keys, stages, bands and
event types; unique reason codes; every stage reachable from the first; every stage above the
first has a way back down; band thresholds that make sense; value segments
(:mod:`.segment_rules`).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from pipeline.state_machine.clock import days
from pipeline.state_machine.errors import ModelError
from pipeline.state_machine.events import EVENT_TYPES, KNOWN_EVENT_TYPES
from pipeline.state_machine.model import (
    BANT_MEASURES,
    CLOCKS,
    MEASURES,
    OPERATORS,
    Advance,
    Band,
    Comparison,
    InstantBand,
    Model,
    PointsRule,
    Regress,
)
from pipeline.state_machine.segment_rules import build_segments

BUILTIN_MODELS: tuple[str, ...] = ("default", "b2b")


class _Reader:
    """Reads one TOML table with precise errors; remembers which keys were used."""

    def __init__(self, path: str, entry: str, table: Any) -> None:
        if not isinstance(table, dict):
            raise ModelError(path, entry, f"must be a table, got {type(table).__name__}")
        self.path = path
        self.entry = entry
        self.table: dict[str, Any] = table
        self.used: set[str] = set()

    def fail(self, problem: str) -> ModelError:
        return ModelError(self.path, self.entry, problem)

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        self.used.add(key)
        if key not in self.table:
            if default is ...:
                raise self.fail(f"missing required key {key!r}")
            return default
        value = self.table[key]
        if kind in (int, float, (int, float)) and isinstance(value, bool):
            raise self.fail(f"{key!r} must be a number, got {value!r}")
        if not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise self.fail(f"{key!r} must be a {names}, got {value!r}")
        return value

    def done(self) -> None:
        unknown = sorted(set(self.table) - self.used)
        if unknown:
            raise self.fail(f"unknown key(s) {', '.join(map(repr, unknown))}")


def _comparisons(reader: _Reader, key: str, allowed: tuple[str, ...] | None) -> tuple[Comparison, ...]:
    raw = reader.get(key, dict, {})
    tests: list[Comparison] = []
    for name, spec in raw.items():
        if allowed is not None and name not in allowed:
            raise reader.fail(f"{key}: unknown measure {name!r}; allowed: {', '.join(allowed)}")
        if isinstance(spec, dict):
            for op, operand in spec.items():
                if op not in OPERATORS:
                    raise reader.fail(f"{key}.{name}: unknown operator {op!r}; allowed: {', '.join(OPERATORS)}")
                if op == "in":
                    if not isinstance(operand, list):
                        raise reader.fail(f"{key}.{name}.in must be a list")
                    operand = frozenset(operand)
                tests.append(Comparison(name, op, operand))
        else:
            tests.append(Comparison(name, "eq", spec))
    for test in tests:
        _check_bant_operand(reader, key, test)
    return tuple(tests)


def _check_bant_operand(reader: _Reader, key: str, test: Comparison) -> None:
    """A BANT guard compares ``bant`` with a count 0-4 and a criterion with true or false."""
    values = test.operand if test.op == "in" else (test.operand,)
    if test.key == "bant":
        if not all(type(v) is int and 0 <= v <= 4 for v in values):
            raise reader.fail(
                f"{key}.bant: compare with a whole number of BANT criteria from 0 to 4 (got {test.operand!r})"
            )
    elif test.key in BANT_MEASURES and (test.op not in ("eq", "ne") or type(test.operand) is not bool):
        raise reader.fail(f"{key}.{test.key}: a BANT criterion is true or false; write {test.key} = true")


class _Builder:
    def __init__(self, path: str, doc: dict[str, Any]) -> None:
        self.path = path
        self.doc = doc
        self.reasons: dict[str, str] = {}

    def reader(self, entry: str, table: Any) -> _Reader:
        return _Reader(self.path, entry, table)

    def claim_reason(self, reader: _Reader, reason: str) -> str:
        if not reason or not reason.replace("_", "").isalnum():
            raise reader.fail(f"reason code {reason!r} must be a non-empty snake_case word")
        if reason in self.reasons:
            raise reader.fail(f"duplicate reason code {reason!r} (already used by {self.reasons[reason]})")
        self.reasons[reason] = reader.entry
        return reason

    def stage(self, reader: _Reader, stages: tuple[str, ...], key: str, default: Any = ...) -> int:
        name = reader.get(key, str, default)
        if name is None:
            return 0
        if name not in stages:
            raise reader.fail(f"{key}: unknown stage {name!r}; stages are: {', '.join(stages)}")
        return stages.index(name)

    def event_types(self, reader: _Reader, key: str, default: Any = ...) -> frozenset[str]:
        values = reader.get(key, list, default)
        for value in values:
            if value not in KNOWN_EVENT_TYPES:
                raise reader.fail(f"{key}: unknown event type {value!r}")
        return frozenset(values)

    def build(self) -> Model:
        top = self.reader("the file", self.doc)
        meta = self.reader("[model]", top.get("model", dict))
        name = meta.get("name", str)
        version = meta.get("version", int)
        description = meta.get("description", str, "")
        stages = tuple(meta.get("stages", list))
        if len(stages) < 2 or len(set(stages)) != len(stages) or not all(isinstance(s, str) for s in stages):
            raise meta.fail("'stages' must list at least two distinct stage names, first to last")
        meta.done()

        bands, half_life, instant = self.temperature(top)
        band_names = tuple(b.name for b in bands)
        points, non_engagement = self.scoring(top)
        scoring_sales = sorted(set(EVENT_TYPES["sales"]) - non_engagement)
        if scoring_sales:
            raise ModelError(
                self.path, "[scoring]",
                f"not_engagement must list the sales events (what sales did is not the contact's engagement); "
                f"add {', '.join(map(repr, scoring_sales))}",
            )
        scored_sales = sorted(set(EVENT_TYPES["sales"]) & set(points))
        if scored_sales:
            raise ModelError(
                self.path, "[scoring]", f"sales events never score; remove points for {', '.join(scored_sales)}"
            )

        orders = self.reader("[orders]", top.get("orders", dict, {}))
        order_completed = orders.get("completed", str, "order_completed")
        order_refunded = orders.get("refunded", str, "order_refunded")
        counted_tier = orders.get("counted_tier", str, "core")
        orders.done()

        alerts = self.reader("[alerts]", top.get("alerts", dict, {}))
        alert_band_name = alerts.get("band", str, band_names[-1])
        if alert_band_name not in band_names:
            raise alerts.fail(f"band: unknown band {alert_band_name!r}; bands are: {', '.join(band_names)}")
        alert_identified_only = alerts.get("identified_only", bool, True)
        respond_within = alerts.get("respond_within_minutes", (int, float), 60)
        max_reasons = alerts.get("max_reasons", int, 5)
        escalate_overdue = alerts.get("escalate_overdue", bool, True)
        if respond_within <= 0:
            raise alerts.fail("respond_within_minutes must be positive")
        alerts.done()

        limits = self.reader("[limits]", top.get("limits", dict, {}))
        dedup_window = limits.get("dedup_window", int, 100)
        order_memory = limits.get("order_memory", int, 16)
        if dedup_window < 1 or order_memory < 1:
            raise limits.fail("dedup_window and order_memory must be at least 1")
        limits.done()

        identity = self.reader("[identity]", top.get("identity", dict, {}))
        merge_reason = self.claim_reason(identity, identity.get("merge_reason", str, "merged_anonymous_history"))
        link_reason = self.claim_reason(identity, identity.get("link_reason", str, "linked_anonymous_id"))
        identity.done()

        segments = build_segments(self, top, _comparisons)

        advances = tuple(
            self.advance(f"advances[{i}]", table, stages, band_names)
            for i, table in enumerate(top.get("advances", list, []))
        )
        regressions = tuple(
            rule
            for i, table in enumerate(top.get("regressions", list, []))
            for rule in self.regress(f"regressions[{i}]", table, stages)
        )
        top.done()
        self.check_graph(stages, advances, regressions)
        return Model(
            name=name,
            version=version,
            description=description,
            stages=stages,
            bands=bands,
            half_life=half_life,
            advances=advances,
            regressions=regressions,
            instant=instant,
            points=points,
            non_engagement=non_engagement,
            order_completed=order_completed,
            order_refunded=order_refunded,
            counted_tier=counted_tier,
            alert_band=band_names.index(alert_band_name),
            alert_identified_only=alert_identified_only,
            respond_within=int(respond_within * 60_000_000),
            alert_max_reasons=max_reasons,
            dedup_window=dedup_window,
            order_memory=order_memory,
            source_path=self.path,
            merge_reason=merge_reason,
            link_reason=link_reason,
            escalate_overdue=escalate_overdue,
            segments=segments,
        )

    def temperature(self, top: _Reader) -> tuple[tuple[Band, ...], int, tuple[InstantBand, ...]]:
        temp = self.reader("[temperature]", top.get("temperature", dict))
        half_life_days = temp.get("half_life_days", (int, float))
        if half_life_days <= 0:
            raise temp.fail("half_life_days must be positive")
        bands: list[Band] = []
        for i, table in enumerate(temp.get("bands", list)):
            r = self.reader(f"temperature.bands[{i}]", table)
            band_name = r.get("name", str)
            if i == 0:
                bands.append(Band(band_name, 0.0, 0.0, "", ""))
            else:
                enter = float(r.get("enter", (int, float)))
                leave = float(r.get("leave_below", (int, float)))
                if not 0 < leave <= enter:
                    raise r.fail(f"need 0 < leave_below <= enter, got leave_below={leave} enter={enter}")
                if enter <= bands[-1].enter or leave <= bands[-1].leave_below:
                    raise r.fail("bands must be listed coldest first, with rising enter and leave_below")
                enter_reason = self.claim_reason(r, r.get("enter_reason", str, f"score_reached_{band_name}"))
                leave_reason = self.claim_reason(r, r.get("leave_reason", str, f"score_fell_below_{band_name}"))
                bands.append(Band(band_name, enter, leave, enter_reason, leave_reason))
            r.done()
        if len(bands) < 2 or len({b.name for b in bands}) != len(bands):
            raise temp.fail("'bands' must list at least two distinctly named bands, coldest first")
        names = [b.name for b in bands]
        instant: list[InstantBand] = []
        for i, table in enumerate(temp.get("instant", list, [])):
            r = self.reader(f"temperature.instant[{i}]", table)
            band = r.get("band", str)
            if band not in names:
                raise r.fail(f"band: unknown band {band!r}; bands are: {', '.join(names)}")
            types = self.event_types(r, "event_types")
            reason = self.claim_reason(r, r.get("reason", str))
            r.done()
            instant.append(InstantBand(types, names.index(band), reason))
        temp.done()
        return tuple(bands), days(half_life_days), tuple(instant)

    def scoring(self, top: _Reader) -> tuple[Mapping[str, tuple[PointsRule, ...]], frozenset[str]]:
        scoring = self.reader("[scoring]", top.get("scoring", dict))
        non_engagement = self.event_types(scoring, "not_engagement", [])
        base = self.reader("[scoring.points]", scoring.get("points", dict, {}))
        rules: dict[str, list[PointsRule]] = {}
        for i, table in enumerate(scoring.get("rules", list, [])):
            r = self.reader(f"scoring.rules[{i}]", table)
            event_type = r.get("event_type", str)
            if event_type not in KNOWN_EVENT_TYPES:
                raise r.fail(f"event_type: unknown event type {event_type!r}")
            where = _comparisons(r, "where", None)
            points = float(r.get("points", (int, float)))
            r.done()
            rules.setdefault(event_type, []).append(PointsRule(event_type, where, points))
        for event_type in base.table:
            if event_type not in KNOWN_EVENT_TYPES:
                raise base.fail(f"unknown event type {event_type!r}")
            points = float(base.get(event_type, (int, float)))
            rules.setdefault(event_type, []).append(PointsRule(event_type, (), points))
        base.done()
        scoring.done()
        return {k: tuple(v) for k, v in rules.items()}, non_engagement

    def advance(self, entry: str, table: Any, stages: tuple[str, ...], bands: tuple[str, ...]) -> Advance:
        r = self.reader(entry, table)
        r.entry = f"{entry} (reason {table.get('reason')!r})" if isinstance(table, dict) else entry
        to = self.stage(r, stages, "to")
        if to == 0:
            raise r.fail(f"cannot advance to the first stage {stages[0]!r}")
        reason = self.claim_reason(r, r.get("reason", str))
        on = self.event_types(r, "on", [])
        temperature = r.get("on_temperature", str, None)
        if temperature is not None and temperature not in bands:
            raise r.fail(f"on_temperature: unknown band {temperature!r}; bands are: {', '.join(bands)}")
        if bool(on) == (temperature is not None):
            raise r.fail("give exactly one trigger: 'on' (event types) or 'on_temperature' (a band)")
        rule = Advance(
            to=to,
            reason=reason,
            on=on,
            on_temperature=None if temperature is None else bands.index(temperature),
            where=_comparisons(r, "where", None),
            require=_comparisons(r, "require", MEASURES),
            min_stage=self.stage(r, stages, "min_stage", None),
            identified_only=r.get("identified_only", bool, False),
            entry=r.entry,
        )
        if rule.min_stage >= to:
            raise r.fail(f"min_stage must be below {stages[to]!r}, or the rule can never fire")
        r.done()
        return rule

    def regress(self, entry: str, table: Any, stages: tuple[str, ...]) -> tuple[Regress, ...]:
        """One rule per stage of ``from`` (a stage, or a list of stages sharing the reason code)."""
        r = self.reader(entry, table)
        r.entry = f"{entry} (reason {table.get('reason')!r})" if isinstance(table, dict) else entry
        raw_from = table.get("from") if isinstance(table, dict) else None
        if isinstance(raw_from, list):
            r.used.add("from")
            if not raw_from:
                raise r.fail("from: list at least one stage")
            sources = []
            for name in raw_from:
                if name not in stages:
                    raise r.fail(f"from: unknown stage {name!r}; stages are: {', '.join(stages)}")
                sources.append(stages.index(name))
        else:
            sources = [self.stage(r, stages, "from")]
        to = self.stage(r, stages, "to")
        for from_stage in sources:
            if to >= from_stage:
                raise r.fail(f"a regression must go down: {stages[from_stage]!r} -> {stages[to]!r}")
        reason = self.claim_reason(r, r.get("reason", str))
        on = self.event_types(r, "on", [])
        after_days = r.get("after_days", (int, float), None)
        since = r.get("since", str, None)
        if (after_days is None) != (since is None):
            raise r.fail("a time-driven rule needs both 'after_days' and 'since'")
        if since is not None and since not in CLOCKS:
            raise r.fail(f"since: unknown clock {since!r}; allowed: {', '.join(CLOCKS)}")
        if after_days is not None and after_days <= 0:
            raise r.fail("after_days must be positive")
        if bool(on) == (after_days is not None):
            raise r.fail("give exactly one trigger: 'on' (event types) or 'after_days' with 'since'")
        where = _comparisons(r, "where", None)
        require = _comparisons(r, "require", MEASURES)
        after = None if after_days is None else days(after_days)
        r.done()
        return tuple(
            Regress(from_stage=f, to=to, reason=reason, on=on, where=where, require=require, after=after,
                    since=since, entry=r.entry)
            for f in sources
        )

    def check_graph(
        self, stages: tuple[str, ...], advances: tuple[Advance, ...], regressions: tuple[Regress, ...]
    ) -> None:
        reachable = {0}
        changed = True
        while changed:
            changed = False
            for up in advances:
                # An advance fires from any stage below its target that satisfies min_stage.
                if up.to not in reachable and any(s >= up.min_stage and s < up.to for s in reachable):
                    reachable.add(up.to)
                    changed = True
            for down in regressions:
                if down.from_stage in reachable and down.to not in reachable:
                    reachable.add(down.to)
                    changed = True
        for index, stage in enumerate(stages):
            if index not in reachable:
                raise ModelError(self.path, f"stage {stage!r}", "unreachable: no advance leads to it")
            if index > 0 and not any(down.from_stage == index for down in regressions):
                raise ModelError(
                    self.path, f"stage {stage!r}", "has no way back down: add a regression from it"
                )


def parse_model(text: str, path: str = "<model>") -> Model:
    """Validate the TOML text of a model; ``path`` is used in error messages."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ModelError(path, "TOML syntax", str(exc)) from exc
    return _Builder(path, doc).build()


def load_model(path: str | Path) -> Model:
    """Load and validate a model file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(str(path), "the file", f"cannot be read: {exc}") from exc
    return parse_model(text, str(path))


@cache
def builtin_model(name: str = "default") -> Model:
    """One of the models shipped with Leadflow (``default`` or ``b2b``), validated once."""
    if name not in BUILTIN_MODELS:
        raise ModelError(name, "the model name", f"unknown built-in model; choose one of {BUILTIN_MODELS}")
    text = resources.files(__package__).joinpath("models", f"{name}.toml").read_text(encoding="utf-8")
    return parse_model(text, f"models/{name}.toml")


def resolve_model(spec: str | None) -> Model:
    """A built-in model by name (``default``, ``b2b``), or a model file by path; None = default."""
    if spec is None:
        return builtin_model()
    if spec in BUILTIN_MODELS:
        return builtin_model(spec)
    return load_model(spec)

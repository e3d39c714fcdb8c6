"""Render a lifecycle model as a Mermaid state diagram (for the README and reviews)."""

from __future__ import annotations

from pipeline.state_machine.clock import MICROS_PER_DAY
from pipeline.state_machine.model import Model


def _trigger(on: frozenset[str], where: str) -> str:
    text = " / ".join(sorted(on))
    return f"{text} [{where}]" if where else text


def _where(tests: tuple[object, ...]) -> str:
    parts = []
    for test in tests:
        key, op, operand = test.key, test.op, test.operand  # type: ignore[attr-defined]
        symbol = {"eq": "=", "ne": "≠", "lt": "<", "le": "≤", "gt": ">", "ge": "≥", "in": "in"}[op]
        shown = str(operand).lower() if isinstance(operand, bool) else operand
        parts.append(f"{key} {symbol} {shown}")
    return ", ".join(parts)


def mermaid(model: Model) -> str:
    """A ``stateDiagram-v2`` with every advance (solid) and cooling regression, labelled by trigger
    and reason code."""
    lines = ["stateDiagram-v2", f"    %% {model.label}: {model.description}"]
    lines.append(f"    [*] --> {model.stages[0]}")
    for rule in model.advances:
        if rule.on_temperature is not None:
            label = f"temperature ≥ {model.bands[rule.on_temperature].name}"
        else:
            label = _trigger(rule.on, _where(rule.where + rule.require))
        guards = []
        if rule.min_stage:
            guards.append(f"from ≥ {model.stages[rule.min_stage]}")
        if rule.identified_only:
            guards.append("identified")
        if guards:
            label += f" ({', '.join(guards)})"
        source = model.stages[rule.min_stage] if rule.min_stage else model.stages[rule.to - 1]
        lines.append(f"    {source} --> {model.stages[rule.to]}: {label} · {rule.reason}")
    for down in model.regressions:
        if down.after is not None:
            label = f"{down.after / MICROS_PER_DAY:g} days since {down.since}"
        else:
            label = _trigger(down.on, _where(down.where + down.require))
        lines.append(f"    {model.stages[down.from_stage]} --> {model.stages[down.to]}: ❄ {label} · {down.reason}")
    return "\n".join(lines) + "\n"

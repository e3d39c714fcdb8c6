"""Fixtures for the contract tests: the example and counter-example files, and schema validators."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pipeline.state_machine.clock import parse_rfc3339
from tests.support.schema_files import schema_validator

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "contracts"

#: The clock of every fixture: counter-examples in the future are relative to it.
RECEIVED_AT = parse_rfc3339("2026-03-01T12:00:00Z")


@dataclass(frozen=True)
class Case:
    """One fixture line: the input bytes, the family it is read as, and what should happen."""

    line: int
    family: str | None
    why: str
    raw: bytes
    expect: str | None = None  # an error code; None for a valid example
    detail: str = ""
    schema: bool = True  # whether the schema files can express this rejection

    @property
    def document(self) -> Any:
        return json.loads(self.raw)

    def __str__(self) -> str:
        return f"line {self.line}: {self.why or self.expect}"


def _cases(name: str) -> list[Case]:
    cases = []
    for number, text in enumerate((FIXTURES / name).read_text(encoding="utf-8").splitlines(), start=1):
        row = json.loads(text)
        if "event" in row:
            raw = json.dumps(row["event"], ensure_ascii=False).encode("utf-8")
        elif "raw_base64" in row:
            raw = base64.b64decode(row["raw_base64"])
        else:
            raw = row["raw"].encode("utf-8")
        cases.append(
            Case(number, row["family"], row.get("why", ""), raw, row.get("expect"), row.get("detail", ""),
                 row.get("schema", True))
        )
    return cases


EXAMPLES = _cases("examples.jsonl")
COUNTER_EXAMPLES = _cases("counter_examples.jsonl")


def schema_name(family: str | None) -> str:
    """The schema an input read as ``family`` must satisfy (a replay line: any family, with source)."""
    return "event" if family is None else f"{family}-event"


@pytest.fixture(scope="session")
def validators() -> dict[str, Any]:
    names = (
        "event", "website-event", "email-event", "purchase-event", "sales-event", "transition", "alert", "deadletter",
        "contact",
    )
    return {name: schema_validator(name) for name in names}

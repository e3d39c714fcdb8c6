"""Transition, alert, contact snapshot and dead-letter records validate against their schema files."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import msgspec
import pytest

from pipeline.state_machine.records import Alert, AlertReason, FirstTouch, Transition
from tests.support.schema_files import SCHEMA_NAMES, load_schema

from .conftest import RECEIVED_AT

SAMPLE = Path(__file__).resolve().parents[3] / "samples" / "journeys.jsonl"


def record(value: msgspec.Struct) -> Any:
    return msgspec.json.decode(msgspec.json.encode(value))


def test_every_schema_file_is_a_valid_draft_2020_12_schema_with_examples() -> None:
    from jsonschema import Draft202012Validator

    for name in SCHEMA_NAMES:
        schema = load_schema(name)
        Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["$id"] == f"https://leadflow.example/schemas/{name}.v1.json"
        assert schema["title"] and schema["description"] and schema["examples"], name


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_schema_examples_are_valid(name: str) -> None:
    from tests.support.schema_files import schema_validator

    validator = schema_validator(name)
    for example in load_schema(name)["examples"]:
        assert [e.message for e in validator.iter_errors(example)] == []


def test_stage_and_time_driven_temperature_transitions_are_valid(validators: dict[str, Any]) -> None:
    stage = Transition("0b0f6d8e-2f57-5b8e-9a0c-3c1f4a7e9d21", "c-1", "stage", "lead", "customer", "advance",
                       "bought_core", ("buyer",), "e-9", "2026-03-01T10:00:00.250000Z", "customer", "hot", 71.5,
                       "default@1")
    cooled = Transition("5d1e0a77-8c2b-5f11-8e5a-0a9b6c4d3e12", "anon:a-1", "temperature", "warm", "cold",
                        "regress", "score_decayed", (), None, "2026-03-09T00:00:00Z", "lead", "cold", 0.0,
                        "b2b@1")
    for transition in (stage, cooled):
        assert [e.message for e in validators["transition"].iter_errors(record(transition))] == []
    broken = record(stage) | {"direction": "sideways"}
    assert not validators["transition"].is_valid(broken)


def test_an_alert_is_valid_and_at_most_five_reasons(validators: dict[str, Any]) -> None:
    reasons = tuple(AlertReason(f"e-{i}", "page_view", 5.0) for i in range(5))
    alert = Alert("9a7c1e52-4b3d-5e6f-a1b2-c3d4e5f60718", "became_hot", "c-1", "lead", 61.0,
                  "2026-03-01T10:00:00Z", "2026-03-01T11:00:00Z", reasons, FirstTouch("website", "google"),
                  "default@1")
    assert [e.message for e in validators["alert"].iter_errors(record(alert))] == []
    too_many = record(alert)
    too_many["reasons"].append(too_many["reasons"][0])
    assert not validators["alert"].is_valid(too_many)


def test_replaying_the_sample_writes_only_valid_records(validators: dict[str, Any]) -> None:
    """The real engine's output over the shipped sample (its broken lines included)."""
    from pipeline.offline.replay import read_lines, replay
    from pipeline.state_machine import builtin_model

    outputs = {"transition": io.BytesIO(), "alert": io.BytesIO(), "deadletter": io.BytesIO(), "contact": io.BytesIO()}
    with SAMPLE.open("rb") as stream:
        replay(read_lines(stream), builtin_model(), received_at=RECEIVED_AT, out=outputs["transition"],
               alerts=outputs["alert"], deadletter=outputs["deadletter"], contacts=outputs["contact"])
    for name, buffer in outputs.items():
        lines = buffer.getvalue().splitlines()
        assert lines, name
        for line in lines:
            errors = [e.message for e in validators[name].iter_errors(msgspec.json.decode(line))]
            assert errors == [], (name, line)

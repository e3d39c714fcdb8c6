"""The wire contracts: ``schemas/*.v1.json`` and the code that decodes and validates them.

Input envelopes become :class:`~pipeline.state_machine.events.Event` records or
:class:`DeadLetter` records (bad input is data, never an exception)::

    decoded = decode_event(line, family=None, received_at=now)        # replay: family from `source`
    results = decode_message(value, family="website", received_at=now)  # Kafka: one envelope or a batch

The code accepts and rejects exactly what the schema files do (``tests/unit/contracts``), plus
the parser-level limits the files cannot express (size, nesting, encoding, JSON syntax, event time
in the future, the Kafka topic's family). Times are integer microseconds since the epoch, UTC.
"""

from __future__ import annotations

from pipeline.contracts.deadletter import (
    ERROR_CODES,
    MAX_RAW_BYTES,
    DeadLetter,
    dead_letter_for,
    decode_deadletter,
    encode_deadletter,
    raw_bytes,
)
from pipeline.contracts.decode import MAX_BATCH_BYTES, MAX_EVENT_BYTES, decode_event, decode_message
from pipeline.contracts.errors import ContractError, SchemaFileError, UnknownErrorCodeError, UnknownFamilyError
from pipeline.contracts.rules import FAMILY_OF, TYPE_RULES
from pipeline.contracts.timestamps import TIMESTAMP_PATTERN, parse_timestamp
from pipeline.contracts.validate import FUTURE_TOLERANCE, MAX_DEPTH, validate_envelope

__all__ = [
    "ERROR_CODES",
    "FAMILY_OF",
    "FUTURE_TOLERANCE",
    "MAX_BATCH_BYTES",
    "MAX_DEPTH",
    "MAX_EVENT_BYTES",
    "MAX_RAW_BYTES",
    "TIMESTAMP_PATTERN",
    "TYPE_RULES",
    "ContractError",
    "DeadLetter",
    "SchemaFileError",
    "UnknownErrorCodeError",
    "UnknownFamilyError",
    "dead_letter_for",
    "decode_deadletter",
    "decode_event",
    "decode_message",
    "encode_deadletter",
    "parse_timestamp",
    "raw_bytes",
    "validate_envelope",
]

"""Dead letters: every input that cannot be applied, with the reason, as ``schemas/deadletter.v1.json``.

``raw`` keeps the rejected input: the text itself when the bytes are valid UTF-8
(``raw_encoding = "utf-8"``), else the exact bytes in standard base64 (``raw_encoding = "base64"``),
so the original can always be recovered. Inputs longer than :data:`MAX_RAW_BYTES` (only
``too_large`` ones) are cut to that many bytes and marked ``raw_truncated``. For an element of a
batch message, ``raw`` is that element's own bytes as received (a slice of the message).
"""

from __future__ import annotations

import base64

import msgspec

from pipeline.contracts.errors import UnknownErrorCodeError
from pipeline.state_machine.clock import to_rfc3339

#: Every dead-letter error code, in the order the checks run.
ERROR_CODES: tuple[str, ...] = (
    "too_large",
    "invalid_encoding",
    "invalid_json",
    "not_an_object",
    "missing_identity",
    "unknown_event_type",
    "wrong_source",
    "schema_violation",
    "future_timestamp",
    # Not an input check: a valid event whose application raised in the contact processor.
    "processing_error",
)
_ERROR_CODES = frozenset(ERROR_CODES)

#: At most this many bytes of a rejected input are kept in ``raw``.
MAX_RAW_BYTES = 65_536


class DeadLetter(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """A rejected input. ``topic``/``partition``/``offset`` (streaming) and ``line`` (replay) are
    set by the adapter that read it; they and ``raw_truncated`` are omitted from JSON when unset."""

    source: str | None
    error_code: str
    error_detail: str
    raw: str
    raw_encoding: str  # "utf-8" | "base64"
    received_at: str
    event_id: str | None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    line: int | None = None
    raw_truncated: bool = False


def raw_text(raw: bytes) -> tuple[str, str, bool]:
    """``(text, encoding, truncated)`` for ``raw`` as a dead letter keeps it (see module doc)."""
    truncated = len(raw) > MAX_RAW_BYTES
    if truncated:
        raw = raw[:MAX_RAW_BYTES]
    try:
        return raw.decode("utf-8"), "utf-8", truncated
    except UnicodeDecodeError as exc:
        if truncated and exc.reason == "unexpected end of data":  # cut inside a character
            return raw[: exc.start].decode("utf-8"), "utf-8", truncated
    return base64.b64encode(raw).decode("ascii"), "base64", truncated


def dead_letter_for(
    raw: bytes,
    code: str,
    detail: str,
    source: str | None,
    received_at: int,
    event_id: str | None = None,
) -> DeadLetter:
    """A dead letter for ``raw`` (``received_at`` in microseconds since the epoch, UTC)."""
    if code not in _ERROR_CODES:
        raise UnknownErrorCodeError(code, ERROR_CODES)
    text, encoding, truncated = raw_text(raw)
    return DeadLetter(
        source=source,
        error_code=code,
        error_detail=detail,
        raw=text,
        raw_encoding=encoding,
        received_at=to_rfc3339(received_at),
        event_id=event_id,
        raw_truncated=truncated,
    )


def raw_bytes(dead: DeadLetter) -> bytes:
    """The rejected input kept in ``dead`` (possibly cut, see ``raw_truncated``)."""
    if dead.raw_encoding == "base64":
        return base64.b64decode(dead.raw)
    return dead.raw.encode("utf-8")


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(DeadLetter)


def encode_deadletter(dead: DeadLetter) -> bytes:
    """``dead`` as one compact JSON object (no trailing newline)."""
    return _encoder.encode(dead)


def decode_deadletter(data: bytes) -> DeadLetter:
    """Read back a dead letter written by :func:`encode_deadletter` (raises ``msgspec.DecodeError``)."""
    return _decoder.decode(data)

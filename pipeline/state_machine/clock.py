"""Time arithmetic for the engine: integer microseconds since the Unix epoch, UTC.

Pure helpers only; the engine is handed times, it never reads the clock.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

MICROS_PER_SECOND = 1_000_000
MICROS_PER_DAY = 86_400 * MICROS_PER_SECOND
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DATE = date(1970, 1, 1)


def days(n: float) -> int:
    """``n`` days in microseconds."""
    return round(n * MICROS_PER_DAY)


def to_rfc3339(micros: int) -> str:
    """Format a time as RFC 3339 in UTC with a ``Z`` suffix (microseconds only when non-zero)."""
    text = _FORMATTED.get(micros)
    if text is None:
        if len(_FORMATTED) >= 8192:  # a bounded memo: one event's time is formatted several times
            _FORMATTED.clear()
        text = _FORMATTED[micros] = _format(micros)
    return text


_FORMATTED: dict[int, str] = {}


def _format(micros: int) -> str:
    day, rest = divmod(micros, MICROS_PER_DAY)
    seconds, fraction = divmod(rest, MICROS_PER_SECOND)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    text = f"{_date(day)}T{_TWO_DIGITS[hours]}:{_TWO_DIGITS[minutes]}:{_TWO_DIGITS[seconds]}"
    return f"{text}.{fraction:06d}Z" if fraction else text + "Z"


_TWO_DIGITS = [f"{i:02d}" for i in range(60)]


@lru_cache(maxsize=4096)
def _date(day: int) -> str:
    return (_EPOCH_DATE + timedelta(days=day)).isoformat()


def from_datetime(dt: datetime) -> int:
    """Convert an aware datetime to microseconds since the epoch."""
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * MICROS_PER_SECOND + delta.microseconds


def parse_rfc3339(text: str) -> int:
    """Parse an RFC 3339 timestamp with an offset (``Z`` or ``±hh:mm``) to microseconds.

    Raises ``ValueError`` for a timestamp without an offset or that does not parse.
    """
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no UTC offset")
    return from_datetime(dt)

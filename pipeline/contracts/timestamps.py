"""Strict RFC 3339 timestamps for the wire: ``2026-03-01T10:00:00Z``, ``…00.123+07:00``.

``datetime.fromisoformat`` alone is too lenient for a contract (it takes dates without a time,
a space for ``T``, basic formats, ``,`` fractions), so the shape is checked first. Accepted:

- ``YYYY-MM-DDTHH:MM:SS``, an optional fraction of one or more digits, then ``Z`` or ``±HH:MM``;
- upper-case ``T`` and ``Z`` only; a real calendar date (leap years), year 0001–9999;
- hours 00–23, minutes and seconds 00–59 (no leap second ``:60``), offsets up to ``±23:59``.

Fractions finer than a microsecond are truncated (times are integer microseconds, UTC).
:data:`TIMESTAMP_PATTERN` is the same rule as one regular expression, written into the schema
files so that a JSON Schema validator alone rejects what :func:`parse_timestamp` rejects.
"""

from __future__ import annotations

import re
from datetime import date

from pipeline.state_machine.clock import MICROS_PER_DAY, MICROS_PER_SECOND

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()

_MONTH_DAY = (
    "(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    "|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    "|02-(?:0[1-9]|1[0-9]|2[0-8]))"
)
_LEAP_DAY = "(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)-02-29"
_TIME = "T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:[.][0-9]+)?"
_OFFSET = "(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"

#: The schema files' ``pattern`` for a timestamp (ECMA-262 and Python ``re`` read it the same way:
#: ``[0-9]`` not ``\\d``, which is Unicode-wide in Python; ``$(?!\\n)`` because Python's ``$`` also
#: matches before a final newline). Year 0000 is excluded, leap days only in leap years.
TIMESTAMP_PATTERN = f"^(?!0000)(?:[0-9]{{4}}-{_MONTH_DAY}|{_LEAP_DAY}){_TIME}{_OFFSET}$(?!\\n)"

# The hot path reads the fixed-width fields through lookup tables (which also bound their ranges)
# and caches the start of each hour ("YYYY-MM-DDTHH"): a few dictionary lookups per timestamp.
_HOUR_SHAPE = re.compile("[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3])")
_MINUTES_SECONDS = {f":{m:02d}:{s:02d}": (m * 60 + s) * MICROS_PER_SECOND for m in range(60) for s in range(60)}
_OFFSETS = {"Z": 0} | {
    f"{sign}{h:02d}:{m:02d}": (-1 if sign == "+" else 1) * (h * 3600 + m * 60) * MICROS_PER_SECOND
    for sign in "+-"
    for h in range(24)
    for m in range(60)
}
_hour_starts: dict[str, int] = {}
_MAX_CACHED_HOURS = 200_000


def _hour_start(prefix: str) -> int | None:
    """Microseconds at ``YYYY-MM-DDTHH``:00:00 UTC, or ``None`` when it is not a calendar hour."""
    if _HOUR_SHAPE.fullmatch(prefix) is None:
        return None
    try:
        ordinal = date.fromisoformat(prefix[:10]).toordinal()
    except ValueError:
        return None
    start = (ordinal - _EPOCH_ORDINAL) * MICROS_PER_DAY + int(prefix[11:]) * 3600 * MICROS_PER_SECOND
    if len(_hour_starts) >= _MAX_CACHED_HOURS:
        _hour_starts.clear()
    _hour_starts[prefix] = start
    return start


def parse_timestamp(text: str) -> int | None:
    """Microseconds since the epoch (UTC) of a strict RFC 3339 timestamp, else ``None``."""
    hour = _hour_starts.get(text[:13])
    if hour is None:
        hour = _hour_start(text[:13])
        if hour is None:
            return None
    minutes_seconds = _MINUTES_SECONDS.get(text[13:19])
    if minutes_seconds is None:
        return None
    if len(text) == 20 and text[19] == "Z":  # the common case
        return hour + minutes_seconds
    zone = len(text) - 1 if text[-1] == "Z" else len(text) - 6
    offset = _OFFSETS.get(text[zone:]) if zone >= 19 else None
    if offset is None:
        return None
    micros = 0
    if zone > 19:  # a fraction: "." and one or more ASCII digits, truncated to microseconds
        fraction = text[20:zone]
        if text[19] != "." or not (fraction.isascii() and fraction.isdigit()):
            return None
        micros = int(fraction[:6].ljust(6, "0"))
    return hour + minutes_seconds + offset + micros

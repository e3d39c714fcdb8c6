"""Signing and verifying webhook requests: ``Leadflow-Signature: t=<unix>,v1=<hex>``.

The signature is the hex HMAC-SHA256, keyed with the subscription's secret, of the bytes
``<t>.<body>``: the timestamp in decimal, a dot, and the exact request body. A receiver recomputes
it over the raw body it received (before any JSON parsing), compares in constant time, and rejects
a timestamp further than a tolerance from its own clock, so a captured request cannot be replayed
later. A header may carry several ``v1=`` values (one per secret while a secret is being rotated);
one match is enough.

Receivers can use :func:`verify` directly, or copy the dozen lines of the recipe in docs/webhooks.md.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from pipeline.webhooks.errors import MalformedSignature, SignatureMismatch, StaleTimestamp

HEADER = "Leadflow-Signature"
SCHEME = "v1"
DEFAULT_TOLERANCE = 300  # seconds


def compute(secret: str | bytes, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``b"<timestamp>." + body`` under ``secret``."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    return hmac.new(key, f"{timestamp}.".encode("ascii") + body, hashlib.sha256).hexdigest()


def sign(secret: str | bytes | list[str | bytes], body: bytes, timestamp: int | None = None) -> str:
    """The ``Leadflow-Signature`` header value for ``body`` at ``timestamp`` (default: now).

    Several secrets give several ``v1=`` entries (for a receiver in the middle of a secret rotation).
    """
    t = int(time.time()) if timestamp is None else int(timestamp)
    secrets = secret if isinstance(secret, list) else [secret]
    return ",".join([f"t={t}", *(f"{SCHEME}={compute(s, t, body)}" for s in secrets)])


def parse(header: str | None) -> tuple[int, list[str]]:
    """``(timestamp, [v1 signatures])`` of a header value; raises :class:`MalformedSignature`."""
    if not header:
        raise MalformedSignature(f"missing {HEADER} header")
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            if not value.isascii() or not value.isdigit():
                raise MalformedSignature(f"{HEADER}: t={value!r} is not a unix timestamp")
            timestamp = int(value)
        elif key == SCHEME:
            signatures.append(value)
    if timestamp is None:
        raise MalformedSignature(f"{HEADER}: no t=<unix timestamp>")
    if not signatures:
        raise MalformedSignature(f"{HEADER}: no {SCHEME}=<signature>")
    return timestamp, signatures


def verify(
    secret: str | bytes,
    body: bytes,
    header: str | None,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> int:
    """Check that ``header`` signs ``body`` under ``secret`` within ``tolerance`` seconds of ``now``.

    Returns the signed timestamp; raises :class:`MalformedSignature`, :class:`SignatureMismatch` or
    :class:`StaleTimestamp` (all :class:`~pipeline.webhooks.errors.SignatureError`, a ``ValueError``).
    The signature is checked before the timestamp, so a forged request learns nothing from the clock.
    """
    timestamp, signatures = parse(header)
    expected = compute(secret, timestamp, body)
    # compare_digest against every candidate, without stopping at the first match
    matched = False
    for candidate in signatures:
        value = candidate.strip().lower()
        if value.isascii():
            matched |= hmac.compare_digest(expected, value)
    if not matched:
        raise SignatureMismatch(f"{HEADER}: no {SCHEME} signature matches this body under the secret")
    current = time.time() if now is None else now
    if tolerance >= 0 and abs(current - timestamp) > tolerance:
        raise StaleTimestamp(
            f"{HEADER}: signed at t={timestamp}, {abs(current - timestamp):.0f}s from now "
            f"(tolerance {tolerance:.0f}s): a replayed or delayed request"
        )
    return timestamp


def is_valid(secret: str | bytes, body: bytes, header: str | None, tolerance: float = DEFAULT_TOLERANCE) -> bool:
    """``True`` when :func:`verify` accepts the request."""
    try:
        verify(secret, body, header, tolerance)
    except (MalformedSignature, SignatureMismatch, StaleTimestamp):
        return False
    return True

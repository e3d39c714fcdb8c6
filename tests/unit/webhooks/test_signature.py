"""Signing and verifying ``Leadflow-Signature``: what a receiver relies on to trust a request."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from pipeline.webhooks import signature
from pipeline.webhooks.errors import MalformedSignature, SignatureError, SignatureMismatch, StaleTimestamp

SECRET = "whsec_0123456789abcdef"
BODY = b'{"alert_id":"9a7c1e52-4b3d-5e6f-a1b2-c3d4e5f60718","type":"became_hot"}'
NOW = 1_767_225_600


def test_a_signed_body_verifies() -> None:
    header = signature.sign(SECRET, BODY, NOW)
    assert signature.verify(SECRET, BODY, header, now=NOW + 10) == NOW
    assert signature.is_valid(SECRET, BODY, signature.sign(SECRET, BODY))


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    """The documented construction, recomputed independently (what the README recipe does)."""
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert signature.sign(SECRET, BODY, NOW) == f"t={NOW},v1={expected}"


def test_a_tampered_body_is_rejected() -> None:
    header = signature.sign(SECRET, BODY, NOW)
    tampered = BODY.replace(b"became_hot", b"became_hoT")
    with pytest.raises(SignatureMismatch):
        signature.verify(SECRET, tampered, header, now=NOW)
    assert not signature.is_valid(SECRET, BODY + b" ", header)


def test_a_wrong_secret_is_rejected() -> None:
    header = signature.sign("whsec_somebody_else_entirely", BODY, NOW)
    with pytest.raises(SignatureMismatch):
        signature.verify(SECRET, BODY, header, now=NOW)


def test_a_tampered_timestamp_is_rejected() -> None:
    header = signature.sign(SECRET, BODY, NOW).replace(f"t={NOW}", f"t={NOW + 1000}")
    with pytest.raises(SignatureMismatch):
        signature.verify(SECRET, BODY, header, now=NOW + 1000)


@pytest.mark.parametrize("age", [301, -301, 86_400])
def test_a_stale_or_future_timestamp_is_rejected(age: int) -> None:
    header = signature.sign(SECRET, BODY, NOW)
    with pytest.raises(StaleTimestamp, match="tolerance 300s"):
        signature.verify(SECRET, BODY, header, now=NOW + age)


def test_the_tolerance_is_configurable() -> None:
    header = signature.sign(SECRET, BODY, NOW)
    assert signature.verify(SECRET, BODY, header, tolerance=900, now=NOW + 600) == NOW
    with pytest.raises(StaleTimestamp):
        signature.verify(SECRET, BODY, header, tolerance=60, now=NOW + 61)


def test_any_matching_v1_is_enough_for_secret_rotation() -> None:
    header = signature.sign(["whsec_the_new_secret_123", SECRET], BODY, NOW)
    assert header.count("v1=") == 2
    assert signature.verify(SECRET, BODY, header, now=NOW) == NOW
    assert signature.verify("whsec_the_new_secret_123", BODY, header, now=NOW) == NOW


@pytest.mark.parametrize(
    "header",
    [None, "", "v1=abc", "t=12x,v1=abc", f"t={NOW}", f"t={NOW},v0=abc", "garbage"],
)
def test_malformed_headers_are_rejected(header: str | None) -> None:
    with pytest.raises(MalformedSignature):
        signature.verify(SECRET, BODY, header, now=NOW)


def test_a_non_ascii_signature_is_a_mismatch_not_a_crash() -> None:
    with pytest.raises(SignatureMismatch):
        signature.verify(SECRET, BODY, f"t={NOW},v1=é", now=NOW)


def test_every_rejection_is_a_signature_error_and_a_value_error() -> None:
    for error in (MalformedSignature, SignatureMismatch, StaleTimestamp):
        assert issubclass(error, SignatureError) and issubclass(error, ValueError)

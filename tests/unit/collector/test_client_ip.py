"""Which client address the collector believes, and how much of it ends up in context.ip."""

from __future__ import annotations

import pytest

from pipeline.collector.client_ip import client_address, shown_address


@pytest.mark.parametrize(
    ("address", "mode", "shown"),
    [
        ("203.0.113.77", "truncate", "203.0.113.0"),
        ("203.0.113.77", "full", "203.0.113.77"),
        ("203.0.113.77", "drop", None),
        ("2001:db8:abcd:12:1:2:3:4", "truncate", "2001:db8:abcd::"),
        ("2001:db8:abcd:12:1:2:3:4", "full", "2001:db8:abcd:12:1:2:3:4"),
        ("::ffff:198.51.100.9", "truncate", "198.51.100.0"),
        ("[2001:db8::1]", "truncate", "2001:db8::"),
        ("not-an-ip", "full", None),
        (None, "truncate", None),
    ],
)
def test_shown_address(address: str | None, mode: str, shown: str | None) -> None:
    assert shown_address(address, mode) == shown


def test_forwarded_for_is_ignored_without_trusted_proxies() -> None:
    assert client_address("10.0.0.5", "198.51.100.9", 0) == "10.0.0.5"


def test_one_trusted_proxy_believes_the_last_entry() -> None:
    # the client forged the first entry; the proxy appended the address it saw
    assert client_address("10.0.0.5", "1.2.3.4, 198.51.100.9", 1) == "198.51.100.9"


def test_two_trusted_proxies() -> None:
    assert client_address("10.0.0.6", "1.2.3.4, 198.51.100.9, 10.0.0.5", 2) == "198.51.100.9"


def test_more_trusted_proxies_than_hops_takes_the_first() -> None:
    assert client_address("10.0.0.5", "198.51.100.9", 3) == "198.51.100.9"

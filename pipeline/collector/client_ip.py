"""The client's address for ``context.ip``: which one to believe, and how much of it to keep.

Behind reverse proxies the TCP peer is the nearest proxy; ``X-Forwarded-For`` is believed only
for the configured number of trusted proxies (a client can put anything in that header).
Truncation keeps the network, not the host: ``/24`` for IPv4 (``203.0.113.77`` →
``203.0.113.0``) and ``/48`` for IPv6, enough for coarse geography, not enough to single out a
household.
"""

from __future__ import annotations

import ipaddress

IPV4_PREFIX = 24
IPV6_PREFIX = 48


def client_address(peer: str | None, forwarded_for: str | None, trusted_proxies: int) -> str | None:
    """The address of the client as seen by the outermost trusted proxy (or the TCP peer)."""
    if trusted_proxies <= 0 or not forwarded_for:
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    chain = [*hops, peer] if peer else hops
    # Each trusted proxy appended the address it saw; the entry before theirs is the client.
    position = len(chain) - 1 - trusted_proxies
    return chain[max(position, 0)] if chain else None


def shown_address(address: str | None, mode: str) -> str | None:
    """``address`` as ``context.ip`` under ``mode`` (``truncate``, ``full``, ``drop``); ``None``
    when there is nothing to show (dropped, or not an IP address)."""
    if address is None or mode == "drop":
        return None
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if mode == "full":
        return str(ip)
    prefix = IPV4_PREFIX if ip.version == 4 else IPV6_PREFIX
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False).network_address)

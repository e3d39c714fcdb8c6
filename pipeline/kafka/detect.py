"""Which kind of broker answers at a bootstrap address: the embedded Tansu broker, or (anything
else) Apache Kafka.

Commands that were not told a broker profile (neither ``--broker-profile`` nor
``LEADFLOW_BROKER_PROFILE``) ask the broker once: one Kafka ``Metadata`` v2 request for no topics,
over a plain TCP connection with a short timeout, and read the cluster id of the answer. Tansu
answers with its cluster id (``tansu_cluster`` unless started with another), so the embedded broker
is recognised by what it says about itself. Every other outcome -- another cluster id, a refused
connection, TLS or SASL listeners that do not answer plain requests, a timeout -- keeps the
production profile ``kafka``: a production user never falls into the ``tansu`` profile by accident.
"""

from __future__ import annotations

import socket
import struct

__all__ = ["TANSU_CLUSTER_PREFIX", "cluster_id", "detect_profile"]

#: A cluster id starting with this names a Tansu broker (its default is ``tansu_cluster``).
TANSU_CLUSTER_PREFIX = "tansu"

_METADATA = 3
_VERSION = 2  # the first Metadata version whose answer carries the cluster id
_CORRELATION = 0x1EADF10


def _request(client_id: bytes) -> bytes:
    """A Metadata v2 request for no topics (an empty array: nothing is auto-created)."""
    header = struct.pack(">hhih", _METADATA, _VERSION, _CORRELATION, len(client_id)) + client_id
    body = struct.pack(">i", 0)
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def _read_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        data += chunk
    return data


def _parse_cluster_id(body: bytes) -> str | None:
    """The cluster id of a Metadata v2 answer body (after the correlation id)."""
    offset = 0

    def take(fmt: str) -> tuple[int, ...]:
        nonlocal offset
        values = struct.unpack_from(fmt, body, offset)
        offset += struct.calcsize(fmt)
        return values

    def text() -> str | None:
        nonlocal offset
        (length,) = take(">h")
        if length < 0:
            return None
        value = body[offset : offset + length].decode("utf-8", "replace")
        offset += length
        return value

    (brokers,) = take(">i")
    for _ in range(max(brokers, 0)):
        take(">i")  # node id
        text()  # host
        take(">i")  # port
        text()  # rack
    return text()


def _split(bootstrap: str) -> list[tuple[str, int]]:
    addresses = []
    for item in bootstrap.split(","):
        item = item.strip().removeprefix("kafka://").removeprefix("PLAINTEXT://")
        if not item:
            continue
        host, _, port = item.rpartition(":")
        if not host:
            host, port = item, "9092"
        try:
            addresses.append((host.strip("[]"), int(port)))
        except ValueError:
            continue
    return addresses


def cluster_id(bootstrap: str, timeout: float = 1.0) -> str | None:
    """The cluster id the first answering bootstrap server reports; None when none answers."""
    for host, port in _split(bootstrap):
        try:
            with socket.create_connection((host, port), timeout=timeout) as sock:
                sock.settimeout(timeout)
                sock.sendall(_request(b"leadflow-detect"))
                (size,) = struct.unpack(">i", _read_exact(sock, 4))
                if not 4 <= size <= 1_048_576:
                    continue
                answer = _read_exact(sock, size)
            (correlation,) = struct.unpack_from(">i", answer)
            if correlation != _CORRELATION:
                continue
            return _parse_cluster_id(answer[4:])
        except (OSError, struct.error, UnicodeError):
            continue
    return None


def detect_profile(bootstrap: str, timeout: float = 1.0) -> str:
    """``"tansu"`` when the broker at ``bootstrap`` says it is Tansu, else ``"kafka"``."""
    found = cluster_id(bootstrap, timeout)
    return "tansu" if found is not None and found.startswith(TANSU_CLUSTER_PREFIX) else "kafka"

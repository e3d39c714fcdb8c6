"""Broker profile by detection: what a Metadata v2 answer's cluster id says, and every failure
keeping the production profile."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from pipeline.kafka.detect import _parse_cluster_id, _request, cluster_id, detect_profile


def _text(value: str | None) -> bytes:
    if value is None:
        return struct.pack(">h", -1)
    data = value.encode()
    return struct.pack(">h", len(data)) + data


def metadata_answer(correlation: int, cluster: str | None) -> bytes:
    body = struct.pack(">i", 1) + struct.pack(">i", 1) + _text("127.0.0.1") + struct.pack(">i", 9092) + _text(None)
    body += _text(cluster) + struct.pack(">i", 1) + struct.pack(">i", 0)  # controller, no topics
    payload = struct.pack(">i", correlation) + body
    return struct.pack(">i", len(payload)) + payload


def fake_broker(answer: bytes | None) -> Iterator[str]:
    """A one-connection TCP server that reads a request and sends ``answer`` (None: closes)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def serve() -> None:
        connection, _ = server.accept()
        with connection:
            size = struct.unpack(">i", connection.recv(4))[0]
            request = b""
            while len(request) < size:
                request += connection.recv(size - len(request))
            correlation = struct.unpack_from(">i", request, 4)[0]
            if answer is not None:
                connection.sendall(answer.replace(b"CORR", struct.pack(">i", correlation)))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.getsockname()[1]}"
    thread.join(2)
    server.close()


@pytest.fixture
def broker_saying(request: pytest.FixtureRequest) -> Iterator[str]:
    yield from fake_broker(request.param)


def _answer(cluster: str | None) -> bytes:
    return metadata_answer(0x1EADF10, cluster)


@pytest.mark.parametrize(("broker_saying", "expected"), [
    (_answer("tansu_cluster"), "tansu"),
    (_answer("tansu-dev"), "tansu"),
    (_answer("MkU3OEVBNTcwNTJENDM2Qk"), "kafka"),  # a real Kafka cluster id
    (_answer(None), "kafka"),  # an old broker without a cluster id
    (b"\x00\x00\x00\x02ab", "kafka"),  # garbage
    (None, "kafka"),  # closes the connection (a TLS listener does that to a plain request)
], indirect=["broker_saying"])
def test_only_a_broker_calling_itself_tansu_gets_the_tansu_profile(broker_saying: str, expected: str) -> None:
    assert detect_profile(broker_saying, timeout=2) == expected


def test_nobody_listening_keeps_kafka() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert cluster_id(f"127.0.0.1:{port}", timeout=0.5) is None
    assert detect_profile(f"127.0.0.1:{port}", timeout=0.5) == "kafka"
    assert detect_profile("not a host list", timeout=0.5) == "kafka"


def test_the_request_and_the_parser_agree_on_the_wire_format() -> None:
    request = _request(b"x")
    assert struct.unpack_from(">ihhih", request) == (len(request) - 4, 3, 2, 0x1EADF10, 1)
    answer = metadata_answer(7, "tansu_cluster")
    assert _parse_cluster_id(answer[8:]) == "tansu_cluster"

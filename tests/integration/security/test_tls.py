"""TLS for real (issue 15): every Leadflow client (Faust, aiokafka, kafka-python) connects over TLS
with a CA and a client certificate generated for the test, through real ``leadflow`` processes.

The embedded broker's Tansu 0.6 does not terminate TLS itself (its ``--cert`` and ``--key`` are
mutually exclusive, and with either the listener stays plaintext: a ClientHello is read as a
Kafka frame, ``early eof``), so TLS is terminated by a small proxy in front of it that requires a
client certificate signed by the test CA (mutual TLS); Tansu advertises the proxy's address, so
every connection a client makes, bootstrap or broker, is TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from pipeline.devtools.demo import die_with_parent, free_port, stop_process, wait_ready
from pipeline.streaming.embedded_broker import find_binary

pytestmark = pytest.mark.integration


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 / localhost and a client certificate."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=leadflow-test-ca", cwd=directory)
    (directory / "san.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={name}", cwd=directory)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.pem", "-days", "2", "-extfile", "san.cnf", cwd=directory)
    return {name: directory / name for name in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}


class TlsProxy(threading.Thread):
    """Terminates mutual TLS on ``port`` and forwards the bytes to ``127.0.0.1:upstream``."""

    def __init__(self, port: int, upstream: int, pki: dict[str, Path]) -> None:
        super().__init__(daemon=True)
        self.port, self.upstream = port, upstream
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki["ca.pem"]))
        self.context.load_cert_chain(str(pki["server.pem"]), str(pki["server.key"]))
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.handshakes = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(Exception):
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.handshakes += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", self.port, ssl=self.context))
        self.ready.set()
        with contextlib.suppress(Exception):
            self.loop.run_until_complete(server.serve_forever())

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[str, dict[str, Path]]]:
    pki = make_pki(tmp_path)
    plain, secure = free_port(), free_port()
    log = open(tmp_path / "tansu.log", "wb")  # noqa: SIM115
    broker = subprocess.Popen(
        [find_binary(), "broker", "--listener-url", f"tcp://127.0.0.1:{plain}", "--advertised-listener-url",
         f"tcp://127.0.0.1:{secure}", "--storage-engine", "memory://tansu/"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent)
    proxy = TlsProxy(secure, plain, pki)
    proxy.start()
    proxy.ready.wait(10)
    try:
        yield f"127.0.0.1:{secure}", pki
    finally:
        proxy.stop()
        stop_process(broker, grace=3)
        log.close()


def _env(bootstrap: str, namespace: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
    env.update(LEADFLOW_KAFKA=bootstrap, LEADFLOW_BROKER_PROFILE="tansu", LEADFLOW_TOPIC_PREFIX=f"{namespace}.",
               LEADFLOW_APP_ID=namespace, LEADFLOW_PARTITIONS="2", LEADFLOW_DATA_DIR=str(tmp_path / "data"),
               LEADFLOW_STORE="memory", **extra)
    return env


def _leadflow(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_every_client_connects_over_mutual_tls(tls_broker: tuple[str, dict[str, Path]], tmp_path: Path) -> None:
    bootstrap, pki = tls_broker
    namespace = f"tls{os.getpid()}"
    secure = _env(bootstrap, namespace, tmp_path, LEADFLOW_KAFKA_SECURITY_PROTOCOL="SSL",
                  LEADFLOW_KAFKA_SSL_CA_FILE=str(pki["ca.pem"]), LEADFLOW_KAFKA_SSL_CERT_FILE=str(pki["client.pem"]),
                  LEADFLOW_KAFKA_SSL_KEY_FILE=str(pki["client.key"]))
    deadline = time.monotonic() + 30
    while (created := _leadflow(["topics"], secure, timeout=60)).returncode != 0 and time.monotonic() < deadline:
        time.sleep(1)  # kafka-python admin over TLS
    assert created.returncode == 0, created.stderr[-2000:]

    # Without the CA the server certificate is not trusted; plaintext gets no Kafka answer.
    untrusted = {k: v for k, v in secure.items() if k != "LEADFLOW_KAFKA_SSL_CA_FILE"}
    refused = _leadflow(["topics"], untrusted, timeout=120)
    assert refused.returncode == 1, refused.stderr[-2000:]

    web_port = free_port()
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(  # Faust, aiokafka (ingest, changelog, health probe), kafka-python admin
            [sys.executable, "-m", "pipeline.cli", "worker", "--web-port", str(web_port)], env=secure, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent)
    try:
        try:
            wait_ready(web_port, worker, timeout=120)
        except Exception as exc:
            raise AssertionError(f"{exc}\n{log_path.read_text()[-4000:]}") from exc
        event = {"source": "website", "event_id": "tls-1", "event_type": "signup", "contact_id": "tls-contact",
                 "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "properties": {}}
        (tmp_path / "events.jsonl").write_bytes(orjson.dumps(event) + b"\n")
        produced = _leadflow(["produce", str(tmp_path / "events.jsonl")], secure)  # kafka-python producer
        assert produced.returncode == 0, produced.stderr[-2000:]
        tailed = _leadflow(["tail", "transitions", "--from-beginning", "--max", "1", "--seconds", "60"], secure)
        assert tailed.returncode == 0, tailed.stderr[-2000:]
        [transition] = [orjson.loads(line) for line in tailed.stdout.splitlines() if line.startswith("{")]
        assert transition["contact_id"] == "tls-contact" and transition["reason"] == "signed_up"
    finally:
        stop_process(worker)
    assert "Traceback" not in log_path.read_text()

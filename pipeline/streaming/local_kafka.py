"""Apache Kafka on this machine, without Docker: KRaft nodes from Maven Central jars, for tests,
benchmarks and ``leadflow kafka``.

:func:`fetch_jars` resolves ``org.apache.kafka:kafka_2.13`` at a pinned version (:data:`KAFKA_VERSION`,
``LEADFLOW_KAFKA_VERSION`` to choose another) plus a logging binding with Maven, once, into a
cache folder (``~/.cache/leadflow/kafka-<version>/libs``; ``LEADFLOW_CACHE`` moves it). A
:class:`LocalKafka` is one or more KRaft nodes, each a combined broker and controller started as
``java -cp 'libs/*' kafka.Kafka node.properties`` after ``kafka.tools.StorageTool format``, on free
``127.0.0.1`` ports, with the data on disk (a node restarted keeps its log, unlike Tansu).

With three nodes it is the cluster users run: replication factor 3 and ``min.insync.replicas=2``
for every internal topic, so one broker can be killed, restarted or rolled under load. With
``security=LocalSecurity(...)`` each node also has a ``SASL_SSL`` listener (SCRAM-SHA-512 users
created at format time, PLAIN users in the listener's JAAS config, a certificate made by the
caller's CA); the ``PLAINTEXT`` listener stays for the inter-broker traffic and the test harness.

Nothing here is used against a cluster it did not start.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from pipeline.streaming.embedded_broker import die_with_parent, free_port

__all__ = [
    "KAFKA_VERSION",
    "KafkaJarsError",
    "LocalKafka",
    "LocalKafkaError",
    "LocalSecurity",
    "fetch_jars",
    "kafka_version",
    "libs_dir",
]

#: The Apache Kafka version the tests, benchmarks and ``docker-compose.yml`` run.
KAFKA_VERSION = "3.9.2"
ENV_VERSION = "LEADFLOW_KAFKA_VERSION"
#: A folder of Kafka's jars to use as they are (wins over the cache and Maven).
ENV_LIBS = "LEADFLOW_KAFKA_LIBS"
ENV_CACHE = "LEADFLOW_CACHE"

#: Logging bindings by Kafka major version: 3.x logs through slf4j 1.7 to reload4j, 4.x through
#: slf4j 1.7 to log4j 2 (what Apache's own distribution ships in libs/).
_LOGGING = {
    3: [("org.slf4j", "slf4j-reload4j", "1.7.36")],
    4: [
        ("org.apache.logging.log4j", "log4j-slf4j-impl", "2.24.3"),
        ("org.apache.logging.log4j", "log4j-core", "2.24.3"),
    ],
}

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>leadflow.local</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>{version}</version>
  <packaging>pom</packaging>
  <description>The jars of Apache Kafka {version} for leadflow's local brokers (not built).</description>
  <dependencies>
{dependencies}
  </dependencies>
</project>
"""

_LOG4J1 = """log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File={log}
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.org.apache.kafka.controller=INFO
log4j.logger.state.change.logger=WARN
"""

_LOG4J2 = """status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
"""


_SCRAM_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"
_PLAIN_MODULE = "org.apache.kafka.common.security.plain.PlainLoginModule"


class LocalKafkaError(RuntimeError):
    """A local Apache Kafka node could not be fetched, formatted or started (the message says why)."""


class KafkaJarsError(LocalKafkaError):
    """Maven could not resolve Kafka's jars."""


def kafka_version(version: str | None = None) -> str:
    return version or os.environ.get(ENV_VERSION) or KAFKA_VERSION


def _major(version: str) -> int:
    return int(version.split(".", 1)[0])


def cache_root() -> Path:
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "leadflow"


def libs_dir(version: str | None = None) -> Path:
    """Where the jars of ``version`` are (or will be) kept."""
    if os.environ.get(ENV_LIBS):
        return Path(os.environ[ENV_LIBS])
    return cache_root() / f"kafka-{kafka_version(version)}" / "libs"


def fetch_jars(version: str | None = None, *, quiet: bool = True) -> Path:
    """The folder of Kafka's jars for ``version``, resolved with Maven on first use (idempotent:
    a complete folder is marked and never fetched again). Raises :class:`KafkaJarsError` with
    Maven's last lines when it cannot resolve them."""
    version = kafka_version(version)
    libs = libs_dir(version)
    if os.environ.get(ENV_LIBS):
        if not any(libs.glob("kafka_2.13-*.jar")):
            raise KafkaJarsError(f"{ENV_LIBS}={libs}: no kafka_2.13-*.jar there")
        return libs
    marker = libs / ".complete"
    if marker.exists():
        return libs
    if shutil.which("mvn") is None:
        raise KafkaJarsError(
            "Maven (mvn) is needed to fetch Apache Kafka's jars: install it (Debian: apt-get install maven)"
        )
    home = libs.parent
    home.mkdir(parents=True, exist_ok=True)
    coordinates = [("org.apache.kafka", "kafka_2.13", version), *_LOGGING[min(max(_major(version), 3), 4)]]
    dependencies = "\n".join(
        f"    <dependency><groupId>{g}</groupId><artifactId>{a}</artifactId><version>{v}</version></dependency>"
        for g, a, v in coordinates
    )
    (home / "pom.xml").write_text(_POM.format(version=version, dependencies=dependencies))
    partial = home / "libs.partial"
    shutil.rmtree(partial, ignore_errors=True)
    command = [
        "mvn",
        "-B",
        *(["-q"] if quiet else []),
        "-f",
        str(home / "pom.xml"),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={partial}",
        "-DincludeScope=runtime",
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not any(partial.glob("kafka_2.13-*.jar")):
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise KafkaJarsError(
            f"mvn could not resolve org.apache.kafka:kafka_2.13:{version} (exit {done.returncode}):\n{tail}"
        )
    shutil.rmtree(libs, ignore_errors=True)
    partial.rename(libs)
    marker.write_text(f"org.apache.kafka:kafka_2.13:{version}\n")
    return libs


@dataclass(frozen=True, slots=True)
class LocalSecurity:
    """A ``SASL_SSL`` listener on every node: the node's certificate and key (PEM, unencrypted key)
    signed by a CA the clients trust, SCRAM-SHA-512 users and PLAIN users (name -> password).
    With ``client_ca_file``, also an ``SSL`` listener that requires a client certificate signed by
    that CA (mutual TLS, as Aiven runs it)."""

    cert_file: str
    key_file: str
    scram_users: Mapping[str, str] = field(default_factory=dict)
    plain_users: Mapping[str, str] = field(default_factory=dict)
    client_ca_file: str | None = None


@dataclass(slots=True)
class _Node:
    node_id: int
    port: int  # PLAINTEXT clients and inter-broker
    controller_port: int
    secure_port: int | None
    tls_port: int | None
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.directory / "server.log"


class LocalKafka:
    """``nodes`` KRaft nodes of Apache Kafka on loopback; use as a context manager.

    ``data_dir``: where each node keeps its log and configuration (a temporary folder, removed by
    :meth:`stop`, when not given). ``broker_config``: extra ``server.properties`` lines for every
    node. The replication defaults follow the node count: 1 on one node; 3 with
    ``min.insync.replicas=2`` on three. ``port``: node 1's client port (node N's is ``port + N - 1``;
    default: free ports).
    """

    profile = "kafka"

    def __init__(
        self,
        nodes: int = 1,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        version: str | None = None,
        security: LocalSecurity | None = None,
        heap_mb: int = 512,
        broker_config: Mapping[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        if nodes < 1:
            raise ValueError("nodes must be at least 1")
        self.version = kafka_version(version)
        self.security = security
        self.heap_mb = heap_mb
        self.broker_config = dict(broker_config or {})
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir) if data_dir is not None else Path(tempfile.mkdtemp(prefix="leadflow-kafka-"))
        self.cluster_id = str(uuid.uuid4())  # formatted into every node; KRaft wants base64 of 16 bytes
        self.nodes = [
            _Node(
                node_id=i + 1,
                port=port + i if port is not None else free_port(),
                controller_port=free_port(),
                secure_port=free_port() if security is not None else None,
                tls_port=free_port() if security is not None and security.client_ca_file else None,
                directory=self.data_dir / f"node-{i + 1}",
            )
            for i in range(nodes)
        ]
        self._formatted = False
        self.startup_seconds: float | None = None

    # -- addresses -----------------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """Every node's ``PLAINTEXT`` listener, comma-separated (``bootstrap_servers``)."""
        return ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    @property
    def secure_bootstrap(self) -> str:
        """Every node's ``SASL_SSL`` listener (``security`` given), by host name: the certificate
        names ``localhost``."""
        if self.security is None:
            raise LocalKafkaError("this cluster has no SASL_SSL listener: pass security=LocalSecurity(...)")
        return ",".join(f"localhost:{node.secure_port}" for node in self.nodes)

    @property
    def tls_bootstrap(self) -> str:
        """Every node's mutual-TLS ``SSL`` listener (``security.client_ca_file`` given)."""
        if self.security is None or self.security.client_ca_file is None:
            raise LocalKafkaError("this cluster has no SSL listener: pass LocalSecurity(client_ca_file=...)")
        return ",".join(f"localhost:{node.tls_port}" for node in self.nodes)

    @property
    def port(self) -> int:
        return self.nodes[0].port

    @property
    def replication_factor(self) -> int:
        """What Leadflow's topics should be created with here (``LEADFLOW_REPLICATION_FACTOR``)."""
        return min(3, len(self.nodes))

    @property
    def min_insync_replicas(self) -> int:
        return 2 if len(self.nodes) >= 3 else 1

    @property
    def pid(self) -> int | None:
        """The first node's process id (also its process group) while it runs."""
        return self.pid_of(1)

    def pid_of(self, node_id: int) -> int | None:
        node = self._node(node_id)
        return node.process.pid if node.process is not None and node.process.poll() is None else None

    @property
    def running(self) -> bool:
        return all(node.process is not None and node.process.poll() is None for node in self.nodes)

    def _node(self, node_id: int) -> _Node:
        if not 1 <= node_id <= len(self.nodes):
            raise ValueError(f"no node {node_id}: nodes are 1..{len(self.nodes)}")
        return self.nodes[node_id - 1]

    # -- configuration -------------------------------------------------------------------------

    def _properties(self, node: _Node) -> dict[str, str]:
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes)
        listeners = [f"PLAINTEXT://127.0.0.1:{node.port}", f"CONTROLLER://127.0.0.1:{node.controller_port}"]
        advertised = [f"PLAINTEXT://127.0.0.1:{node.port}"]
        protocols = ["PLAINTEXT:PLAINTEXT", "CONTROLLER:PLAINTEXT"]
        replication = str(self.replication_factor)
        properties = {
            "process.roles": "broker,controller",
            "node.id": str(node.node_id),
            "controller.quorum.voters": voters,
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(node.directory / "data"),
            "num.partitions": "1",
            "default.replication.factor": replication,
            "min.insync.replicas": str(self.min_insync_replicas),
            "offsets.topic.replication.factor": replication,
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": replication,
            "transaction.state.log.min.isr": str(self.min_insync_replicas),
            "share.coordinator.state.topic.replication.factor": replication,
            "share.coordinator.state.topic.min.isr": str(self.min_insync_replicas),
            # A test's first group join should not wait for more members (default 3 s).
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            # Let the compaction test see compaction within seconds (per-topic settings decide).
            "log.cleaner.backoff.ms": "1000",
            "unclean.leader.election.enable": "false",
        }
        if self.security is not None and node.secure_port is not None:
            listeners.append(f"SASL_SSL://127.0.0.1:{node.secure_port}")
            advertised.append(f"SASL_SSL://localhost:{node.secure_port}")
            protocols.append("SASL_SSL:SASL_SSL")
            mechanisms = [
                m
                for m, users in (("SCRAM-SHA-512", self.security.scram_users), ("PLAIN", self.security.plain_users))
                if users
            ]
            plain = " ".join(f'user_{name}="{password}"' for name, password in self.security.plain_users.items())
            properties.update(
                {
                    "listener.name.sasl_ssl.sasl.enabled.mechanisms": ",".join(mechanisms),
                    "sasl.enabled.mechanisms": ",".join(mechanisms),
                    "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": f"{_SCRAM_MODULE} required;",
                    "listener.name.sasl_ssl.plain.sasl.jaas.config": f"{_PLAIN_MODULE} required {plain};",
                    "listener.name.sasl_ssl.ssl.keystore.type": "PEM",
                    "listener.name.sasl_ssl.ssl.keystore.location": str(node.directory / "keystore.pem"),
                    "listener.name.sasl_ssl.ssl.client.auth": "none",
                }
            )
            if self.security.client_ca_file is not None and node.tls_port is not None:
                listeners.append(f"SSL://127.0.0.1:{node.tls_port}")
                advertised.append(f"SSL://localhost:{node.tls_port}")
                protocols.append("SSL:SSL")
                properties.update(
                    {
                        "listener.name.ssl.ssl.keystore.type": "PEM",
                        "listener.name.ssl.ssl.keystore.location": str(node.directory / "keystore.pem"),
                        "listener.name.ssl.ssl.truststore.type": "PEM",
                        "listener.name.ssl.ssl.truststore.location": self.security.client_ca_file,
                        "listener.name.ssl.ssl.client.auth": "required",
                    }
                )
        properties.update(
            {
                "listeners": ",".join(listeners),
                "advertised.listeners": ",".join(advertised),
                "listener.security.protocol.map": ",".join(protocols),
            }
        )
        properties.update(self.broker_config)
        return properties

    def _write_config(self, node: _Node) -> Path:
        node.directory.mkdir(parents=True, exist_ok=True)
        path = node.directory / "server.properties"
        path.write_text("".join(f"{key}={value}\n" for key, value in self._properties(node).items()))
        if _major(self.version) >= 4:
            (node.directory / "log4j2.properties").write_text(_LOG4J2.format(log=node.log_path))
        else:
            (node.directory / "log4j.properties").write_text(_LOG4J1.format(log=node.log_path))
        if self.security is not None:
            # Kafka's PEM key store: the private key (PKCS#8, not encrypted) and the certificate chain.
            key = Path(self.security.key_file).read_text()
            chain = Path(self.security.cert_file).read_text()
            (node.directory / "keystore.pem").write_text(key.rstrip() + "\n" + chain)
        return path

    def _java(self, node: _Node, main: str, *args: str) -> list[str]:
        libs = fetch_jars(self.version)
        if shutil.which("java") is None:
            raise LocalKafkaError(
                "Java (17 or newer) is needed to run Apache Kafka: install it (Debian: openjdk-17-jre-headless)"
            )
        if _major(self.version) >= 4:
            logging = f"-Dlog4j2.configurationFile={node.directory / 'log4j2.properties'}"
        else:
            logging = f"-Dlog4j.configuration=file:{node.directory / 'log4j.properties'}"
        return [
            "java",
            f"-Xms{min(256, self.heap_mb)}m",
            f"-Xmx{self.heap_mb}m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={node.directory}",
            logging,
            "-cp",
            f"{libs}/*",
            main,
            *args,
        ]

    def _format(self) -> None:
        if self._formatted:
            return
        cluster = _kraft_cluster_id(self.cluster_id)
        for node in self.nodes:
            config = self._write_config(node)
            if (node.directory / "data" / "meta.properties").exists():
                continue
            scram = []
            if self.security is not None:
                for name, password in self.security.scram_users.items():
                    scram += ["--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]"]
            # --cluster-id=...: an id may begin with "-", which argparse would read as an option
            args = ["format", f"--cluster-id={cluster}", "-c", str(config), *scram]
            command = self._java(node, "kafka.tools.StorageTool", *args)
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-10:])
                raise LocalKafkaError(
                    f"kafka.tools.StorageTool format failed for node {node.node_id} (exit {done.returncode}):\n{tail}"
                )
        self._formatted = True

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self, timeout: float = 90.0) -> LocalKafka:
        """Format (once) and start every node not running, then wait until the cluster answers
        with all its brokers registered. Raises :class:`LocalKafkaError` with the log tail."""
        started = time.monotonic()
        self._format()
        atexit.register(self.stop)
        for node in self.nodes:
            if node.process is None or node.process.poll() is not None:
                self._spawn(node)
        self.wait_ready(timeout)
        self.startup_seconds = time.monotonic() - started
        return self

    def _spawn(self, node: _Node) -> None:
        self._write_config(node)  # the ports stay; a restart reads the same file
        command = self._java(node, "kafka.Kafka", str(node.directory / "server.properties"))
        # Linux sends the parent-death signal when the *thread* that started the child exits: a
        # node restarted from a short-lived thread (a test's fault injector) would be killed with
        # it. Only the main thread's children get it; the others are stopped by stop() / atexit.
        main = threading.current_thread() is threading.main_thread()
        with open(node.directory / "stdout.log", "ab") as out:
            node.process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_node_dies_with_parent if main else None,
            )

    def wait_ready(self, timeout: float = 90.0, nodes: Iterable[int] | None = None) -> None:
        """Wait until the running nodes (or ``nodes``) are registered brokers and answer metadata."""
        from kafka import KafkaAdminClient

        wanted = set(nodes) if nodes is not None else {n.node_id for n in self.nodes if n.process is not None}
        deadline = time.monotonic() + timeout
        last: BaseException | str | None = None
        while time.monotonic() < deadline:
            for node in self.nodes:
                if node.node_id in wanted and (node.process is None or node.process.poll() is not None):
                    code = None if node.process is None else node.process.returncode
                    raise LocalKafkaError(
                        f"Kafka node {node.node_id} exited (status {code}) on 127.0.0.1:{node.port}:\n"
                        + self.log_tail(node.node_id)
                    )
            try:
                up = ",".join(f"127.0.0.1:{self._node(i).port}" for i in sorted(wanted))
                admin = KafkaAdminClient(
                    bootstrap_servers=up, request_timeout_ms=5000, client_id="leadflow-local-kafka"
                )
                try:
                    brokers = {int(b["broker_id"]) for b in admin.describe_cluster()["brokers"]}
                finally:
                    admin.close()
                if wanted <= brokers:
                    return
                last = f"brokers registered: {sorted(brokers)}"
            except Exception as exc:  # not answering yet
                last = exc
            time.sleep(0.25)
        raise LocalKafkaError(
            f"Apache Kafka on {self.bootstrap} was not ready within {timeout:.0f}s (last: {last!r}); "
            f"logs under {self.data_dir}:\n{self.log_tail(min(wanted) if wanted else 1)}"
        )

    def wait_fully_replicated(self, timeout: float = 120.0) -> None:
        """Wait until every partition of every topic has all its replicas in sync (what an
        operator waits for between two brokers of a rolling restart)."""
        deadline = time.monotonic() + timeout
        lagging: list[str] = []
        while time.monotonic() < deadline:
            admin = self._admin()
            try:
                described = admin.describe_topics(list(admin.list_topics()))
            except Exception:  # a broker is still starting: ask again
                described = None
            finally:
                admin.close()
            if described is not None:
                lagging = [
                    f"{t['name']}/{p['partition_index']}"
                    for t in described
                    for p in t.get("partitions", [])
                    if set(p.get("isr_nodes", [])) != set(p.get("replica_nodes", []))
                ]
                if not lagging:
                    return
            time.sleep(0.5)
        raise LocalKafkaError(f"partitions not fully replicated within {timeout:.0f}s: {lagging[:10]}")

    def stop_node(self, node_id: int, sig: int = signal.SIGTERM, grace: float = 30.0) -> None:
        """Stop one node: ``SIGTERM`` is a controlled shutdown (leadership moved first),
        ``SIGKILL`` a crash. The node's data stays; :meth:`start_node` brings it back."""
        node = self._node(node_id)
        process = node.process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, sig)
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        node.process = None

    def kill_node(self, node_id: int) -> None:
        self.stop_node(node_id, signal.SIGKILL)

    def start_node(self, node_id: int, timeout: float = 90.0) -> None:
        """Start one stopped node on its old ports and data, and wait until it is registered."""
        node = self._node(node_id)
        if node.process is None or node.process.poll() is not None:
            self._spawn(node)
        self.wait_ready(timeout, nodes=[node_id])

    def stop(self, grace: float = 30.0, *, keep_data: bool = False) -> None:
        """Stop every node (controlled shutdown, ``SIGKILL`` after ``grace``); remove the data
        folder when this object made it and ``keep_data`` is false. Safe to call twice."""
        # Stop the nodes together: a controlled shutdown of the last voters waits for a quorum.
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(node.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for node in self.nodes:
            if node.process is not None:
                try:
                    node.process.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(node.process.pid, signal.SIGKILL)
                    node.process.wait()
                node.process = None
        if not keep_data:
            atexit.unregister(self.stop)
            if self._own_dir:
                shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> LocalKafka:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- topics --------------------------------------------------------------------------------

    def _admin(self, timeout: float = 10.0) -> Any:
        from kafka import KafkaAdminClient

        live = [n for n in self.nodes if n.process is not None and n.process.poll() is None] or self.nodes
        return KafkaAdminClient(
            bootstrap_servers=",".join(f"127.0.0.1:{n.port}" for n in live),
            request_timeout_ms=int(timeout * 1000),
            client_id="leadflow-local-kafka",
        )

    def create_topics(
        self, names: Iterable[str], partitions: int = 4, timeout: float = 30.0, configs: Mapping[str, str] | None = None
    ) -> list[str]:
        """Create the topics that do not exist yet (replication :attr:`replication_factor`), and
        wait until every partition has a leader; returns the names created."""
        from kafka.admin import NewTopic
        from kafka.errors import TopicAlreadyExistsError

        wanted = list(dict.fromkeys(names))
        admin = self._admin(timeout)
        try:
            existing = set(admin.list_topics())
            created = []
            for name in wanted:
                if name in existing:
                    continue
                try:
                    admin.create_topics(
                        [
                            NewTopic(
                                name=name,
                                num_partitions=partitions,
                                replication_factor=self.replication_factor,
                                topic_configs=dict(configs or {}),
                            )
                        ],
                        timeout_ms=int(timeout * 1000),
                    )
                    created.append(name)
                except TopicAlreadyExistsError:
                    pass
            deadline = time.monotonic() + timeout
            while True:
                found = self.leaders(wanted, admin=admin)
                if all(len(found.get(n, {})) == partitions and all(v >= 0 for v in found[n].values()) for n in wanted):
                    return created
                if time.monotonic() > deadline:
                    raise LocalKafkaError(f"topics not ready within {timeout:.0f}s: {sorted(wanted)}")
                time.sleep(0.1)
        finally:
            admin.close()

    def partitions_of(self, topic: str) -> int:
        admin = self._admin()
        try:
            if topic not in set(admin.list_topics()):
                return 0
            return len(self.leaders([topic], admin=admin).get(topic, {}))
        finally:
            admin.close()

    def leaders(self, topics: Iterable[str], admin: Any | None = None) -> dict[str, dict[int, int]]:
        """``{topic: {partition: leader node id}}`` (``-1``: no leader right now)."""
        own = admin is None
        admin = admin or self._admin()
        try:
            described = admin.describe_topics(list(topics))
        finally:
            if own:
                admin.close()
        return {
            t["name"]: {int(p["partition_index"]): int(p["leader_id"]) for p in t.get("partitions", [])}
            for t in described
            if not t.get("error_code")
        }

    # -- diagnostics ---------------------------------------------------------------------------

    def log_tail(self, node_id: int = 1, chars: int = 3000) -> str:
        node = self._node(node_id)
        parts = []
        for path in (node.directory / "stdout.log", node.log_path):
            with contextlib.suppress(OSError):
                parts.append(path.read_text(errors="replace")[-chars:])
        text = "\n".join(p for p in parts if p.strip())
        return text[-chars:] if text else "(empty log)"

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<LocalKafka {self.version} x{len(self.nodes)} {self.bootstrap} {state} data={self.data_dir}>"


def _kraft_cluster_id(value: str) -> str:
    """KRaft's cluster id: 16 bytes in URL-safe base64 without padding (what ``random-uuid`` prints)."""
    import base64

    return base64.urlsafe_b64encode(uuid.UUID(value).bytes).decode().rstrip("=")


def _node_dies_with_parent() -> None:
    die_with_parent(signal.SIGKILL)  # an orphaned test broker has nothing to save

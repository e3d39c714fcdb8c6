"""``leadflow up``: the whole product on one machine as one supervised process tree.

:func:`run_stack` starts, each as a child process in its own session that dies with this one (even
when this one is killed with SIGKILL: ``PR_SET_PDEATHSIG``), the embedded broker (unless a Kafka is
given), a worker, the history sink, the collector, the webhooks deliverer (given a subscriptions
file) and the console; waits until each says it is ready; prints what a user needs (the tracker
snippet with its write key, the URLs, the database); and on Ctrl-C or SIGTERM stops them all, the
broker last. A child that exits on its own stops the stack with its log's last lines.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import orjson

from pipeline.config.settings import Settings, from_env
from pipeline.devtools.demo import shifted_journeys, stop_process
from pipeline.kafka.credentials import KafkaCredentialsError, check_credentials
from pipeline.kafka.tools import produce_lines
from pipeline.kafka.topics import TopicSettingsError, ensure_topics
from pipeline.streaming.embedded_broker import EmbeddedBroker, die_with_parent, free_port

READY_TIMEOUT = 120.0


class StackError(RuntimeError):
    """A process of the stack did not start or stopped; the message has its log's end."""


@dataclass(frozen=True, slots=True)
class StackOptions:
    """What ``leadflow up`` was asked for (see ``leadflow up --help``)."""

    db_url: str
    data_dir: Path
    kafka: str | None = None
    broker_port: int | None = None
    collector_port: int = 8080
    console_port: int = 8088
    bind: str = "127.0.0.1"
    write_keys: Mapping[str, str] = field(default_factory=dict)  # source -> key
    cors_origins: tuple[str, ...] = ()
    webhooks_config: str | None = None
    with_simulator: bool = False
    simulator_contacts: int = 200
    simulator_rate: float = 50.0
    partitions: int = 4
    console_env: Mapping[str, str] = field(default_factory=dict)  # console credentials, if any


@dataclass(slots=True)
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    ready_url: str | None


class Supervisor:
    """Children started from the main thread (their death signal follows this thread), stopped in
    reverse order."""

    def __init__(self, log_dir: Path, death_signal: int = signal.SIGTERM) -> None:
        self.log_dir = log_dir
        self.children: list[Child] = []
        self.death_signal = death_signal

    def spawn(self, name: str, arguments: list[str], env: Mapping[str, str], ready_url: str | None) -> Child:
        log = self.log_dir / f"{name}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "pipeline.cli", *arguments],
                env=dict(env), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, preexec_fn=functools.partial(die_with_parent, self.death_signal),
            )
        child = Child(name, process, log, ready_url)
        self.children.append(child)
        return child

    def check(self) -> None:
        for child in self.children:
            code = child.process.poll()
            if code is not None:
                raise StackError(f"{child.name} exited with code {code}; {child.log}:\n{tail_of(child.log)}")

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        waiting = [c for c in self.children if c.ready_url]
        while waiting:
            self.check()
            waiting = [c for c in waiting if not _answers_ready(c.ready_url or "")]
            if time.monotonic() > deadline:
                names = ", ".join(c.name for c in waiting)
                raise StackError(f"not ready after {timeout:.0f}s: {names}; logs in {self.log_dir}")
            if waiting:
                time.sleep(0.2)

    def stop_all(self) -> None:
        for child in reversed(self.children):
            stop_process(child.process)
        self.children.clear()


def tail_of(path: Path, chars: int = 2500) -> str:
    with contextlib.suppress(OSError):
        return path.read_text(errors="replace")[-chars:]
    return "(no log)"


def _answers_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            document = orjson.loads(response.read())
            return bool(document.get("ready", document.get("alive", False)))
    except (OSError, ValueError):
        return False


def _child_env(settings: Settings, extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
    env.update(settings.to_env())
    env.update(extra)
    return env


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP stop the stack the way Ctrl-C does; so does SIGINT, even when this process
    was started with it ignored (a background job of a script)."""
    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def banner(options: StackOptions, collector: str, console: str, bootstrap: str, seconds: float) -> str:
    website_key = options.write_keys.get("website", "")
    lines = [
        "",
        f"Leadflow is up (ready in {seconds:.1f}s).",
        "",
        f"  console     {console}",
        f"  collector   {collector}/v1/events/<source>",
        f"  kafka       {bootstrap}" + ("  (embedded Tansu broker)" if options.kafka is None else ""),
        f"  database    {options.db_url}",
        f"  logs        {options.data_dir / 'logs'}",
        "",
        "Paste the tracker into your pages (origins allowed: " + ", ".join(options.cors_origins) + "):",
        "",
        f'  <script src="{collector}/v1/tracker.js" data-write-key="{website_key}" async></script>',
        "",
        "Write keys (development, new each run): "
        + ", ".join(f"{source}:{key}" for source, key in options.write_keys.items()),
        "Ctrl-C stops everything.",
        "",
    ]
    return "\n".join(lines)


def _simulate(settings: Settings, options: StackOptions, stop: threading.Event) -> None:
    lines = shifted_journeys(options.simulator_contacts, datetime.now(UTC))
    with contextlib.suppress(Exception):
        produce_lines(((f"sim:{i}", line) for i, line in enumerate(lines, 1) if not stop.is_set()),
                      settings, pace=options.simulator_rate)


def run_stack(options: StackOptions) -> int:
    """Run the stack until Ctrl-C; the exit code (0 after a clean stop)."""
    started = time.monotonic()
    log_dir = options.data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    # Orphaned by a SIGKILLed parent, children get SIGTERM -- but on the embedded broker (which dies
    # with the parent too, taking every topic with it) a worker's graceful shutdown waits for a broker
    # that is gone: there, SIGKILL, since nothing is left to save.
    supervisor = Supervisor(log_dir, signal.SIGKILL if options.kafka is None else signal.SIGTERM)
    broker: EmbeddedBroker | None = None
    stop_simulator = threading.Event()
    with _terminate_as_interrupt():
        try:
            if options.kafka is None:
                broker = EmbeddedBroker(log_dir=log_dir, port=options.broker_port).start()
                settings = from_env({}, bootstrap=broker.bootstrap, profile="tansu")
            else:
                from pipeline.kafka.detect import detect_profile

                profile = os.environ.get("LEADFLOW_BROKER_PROFILE") or detect_profile(options.kafka)
                settings = from_env(bootstrap=options.kafka, profile=profile)
                check_credentials(settings)  # a refused login or certificate: one line, exit 2
            # The embedded broker's topics are new each run (options.partitions); on a Kafka of the
            # operator's, LEADFLOW_PARTITIONS says what its topics have.
            embedded = options.kafka is None
            settings = settings.with_(partitions=options.partitions if embedded else settings.partitions,
                                      db_url=options.db_url, store="memory" if embedded else settings.store,
                                      data_dir=str(options.data_dir / "worker"))
            ensure_topics(settings)
            worker_port, sink_port, webhooks_port = free_port(), free_port(), free_port()
            local = "127.0.0.1"
            supervisor.spawn("worker", ["worker", "--no-create-topics"],
                             _child_env(settings.with_(web_port=worker_port), {}),
                             f"http://{local}:{worker_port}/readyz")
            supervisor.spawn("sink", ["sink", "--db", options.db_url, "--web-port", str(sink_port)],
                             _child_env(settings, {}), f"http://{local}:{sink_port}/readyz")
            keys = ",".join(f"{source}:{key}" for source, key in options.write_keys.items())
            collector_env = {"LEADFLOW_COLLECTOR_WRITE_KEYS": keys,
                             "LEADFLOW_COLLECTOR_CORS_ORIGINS": ",".join(options.cors_origins)}
            supervisor.spawn("collector", ["collector", "--port", str(options.collector_port), "--bind", options.bind],
                             _child_env(settings, collector_env), f"http://{local}:{options.collector_port}/readyz")
            metrics = {"worker": f"http://{local}:{worker_port}/metrics",
                       "sink": f"http://{local}:{sink_port}/metrics",
                       "collector": f"http://{local}:{options.collector_port}/metrics"}
            if options.webhooks_config is not None:
                supervisor.spawn("webhooks", ["webhooks", "--config", options.webhooks_config, "--web-port",
                                              str(webhooks_port), "--no-create-topics"],
                                 _child_env(settings, {}), f"http://{local}:{webhooks_port}/readyz")
                metrics["webhooks"] = f"http://{local}:{webhooks_port}/metrics"
            collector_url = f"http://{local if options.bind in ('0.0.0.0', '::') else options.bind}:" \
                            f"{options.collector_port}"
            console_args = ["console", "--db", options.db_url, "--kafka", settings.bootstrap,
                            "--broker-profile", settings.profile, "--port", str(options.console_port),
                            "--bind", options.bind, "--collector", collector_url]
            for name, url in metrics.items():
                console_args += ["--metrics", f"{name}={url}"]
            console_env = dict(options.console_env)
            if "sales" in options.write_keys:
                console_env["LEADFLOW_CONSOLE_SALES_KEY"] = options.write_keys["sales"]
            supervisor.spawn("console", console_args, _child_env(settings, console_env),
                             f"http://{local}:{options.console_port}/healthz")
            supervisor.wait_ready()
            host = "localhost" if options.bind == "127.0.0.1" else options.bind
            console_url = f"http://{host}:{options.console_port}/"
            print(banner(options, collector_url, console_url, settings.bootstrap, time.monotonic() - started),
                  flush=True)
            if options.with_simulator:
                print(f"simulator: {options.simulator_contacts} journeys at {options.simulator_rate:.0f} events/s",
                      flush=True)
                threading.Thread(target=_simulate, args=(settings, options, stop_simulator), daemon=True,
                                 name="simulator").start()
            while True:
                supervisor.check()
                if broker is not None and not broker.running:
                    raise StackError(f"the embedded broker stopped; {broker.log_path}:\n{broker.log_tail()}")
                time.sleep(0.5)
        except KeyboardInterrupt:
            stopping = ("console, collector, sink, worker" + (", webhooks" if options.webhooks_config else "")
                        + (", embedded broker" if broker is not None else ""))
            print(f"\nstopping: {stopping}...", file=sys.stderr, flush=True)
            return 0
        except (KafkaCredentialsError, TopicSettingsError) as exc:
            print(f"leadflow up: {exc}", file=sys.stderr, flush=True)
            return 2
        except (StackError, OSError, RuntimeError) as exc:
            print(f"leadflow up: {exc}", file=sys.stderr, flush=True)
            return 1
        finally:
            stop_simulator.set()
            supervisor.stop_all()
            if broker is not None:
                broker.stop()

"""Benchmark (not a test): the HTTP collector under load from wrk, on loopback, on the embedded broker.

    PYTHONPATH=. python benchmarks/bench_collector.py                 # 1 and 100 events per request
    PYTHONPATH=. python benchmarks/bench_collector.py --seconds 5 --connections 32

Starts an embedded broker (Tansu) and a ``leadflow collector`` process exactly as an operator
would, then runs ``wrk`` (Debian package ``wrk``) against ``POST /v1/events/website`` with a fixed
body: one envelope per request, then a JSON array of 100 envelopes of 100 contacts. Every 202 is
an acknowledgement from the broker (acks=all), so requests/s is end-to-end: HTTP, validation with
the shared contract, re-encoding with the stamped context, and the produce round trip. Reports
requests/s, events/s and wrk's latency percentiles (p50, p99), checks that wrk saw no non-2xx
answer and that the collector's ``leadflow_collector_events_accepted_total`` matches, and ends
with one ``bench-collector:`` line.

On this shared 2-core machine wrk, the collector and the broker share the cores: compare figures
measured in one run, not across runs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from pipeline.collector.config import CollectorConfig
from pipeline.config.settings import Settings, from_env
from pipeline.devtools.demo import stop_process
from pipeline.kafka.topics import ensure_topics
from pipeline.streaming.embedded_broker import EmbeddedBroker, die_with_parent, free_port

WRITE_KEY = "pk_bench_000000000001"


@dataclass
class Run:
    events_per_request: int
    requests: int
    seconds: float
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: str

    @property
    def events_per_second(self) -> float:
        return self.requests_per_second * self.events_per_request


def body(events: int) -> bytes:
    occurred = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))
    envelopes = [
        {
            "event_id": f"bench-{events}-{n}",
            "event_type": "page_view",
            "anonymous_id": f"visitor-{n:05d}",
            "occurred_at": occurred,
            "properties": {"url": f"https://www.example.com/pricing?ref={n}", "title": "Pricing",
                           "utm_source": "newsletter", "utm_medium": "email", "utm_campaign": "spring"},
            "context": {"user_agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0", "locale": "vi-VN"},
        }
        for n in range(events)
    ]
    return orjson.dumps(envelopes[0] if events == 1 else envelopes)


def _duration_ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def run_wrk(url: str, payload: bytes, events: int, connections: int, threads: int, seconds: int,
            workdir: Path) -> Run:
    body_file = workdir / f"body-{events}.json"
    body_file.write_bytes(payload)
    script = workdir / f"post-{events}.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {WRITE_KEY}"\n'
        f'local f = io.open("{body_file}", "rb"); wrk.body = f:read("*a"); f:close()\n'
    )
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    (workdir / f"wrk-{events}.txt").write_text(output)
    percentiles = dict(re.findall(r"^\s+(\d+)%\s+(\S+)$", output, re.MULTILINE))
    requests, seconds_taken = re.search(r"(\d+) requests in ([\d.]+\w+),", output).groups()  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: (.*)", output)
    return Run(
        events_per_request=events,
        requests=int(requests),
        seconds=_duration_ms(seconds_taken) / 1000,
        requests_per_second=float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),  # type: ignore[union-attr]
        p50_ms=_duration_ms(percentiles["50"]),
        p99_ms=_duration_ms(percentiles["99"]),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=errors.group(1) if errors else "none",
    )


def accepted_total(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    match = re.search(r'^leadflow_collector_events_accepted_total\{source="website"\} (\S+)$', text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


@contextlib.contextmanager
def collector_process(settings: Settings, config: CollectorConfig, log_path: Path) -> Iterator[None]:
    """A ``leadflow collector`` child process with ``settings`` and ``config``, ready on
    ``config.port`` when the block starts; always stopped on exit (also by bench_abuse.py)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
    env.update(settings.to_env())
    env.update(config.to_env())
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "collector", "--loglevel", "warning"],
                                   env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                   preexec_fn=die_with_parent)
    try:
        wait_ready(config.port, process)
        yield
    finally:
        stop_process(process)


def wait_ready(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the collector exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError("the collector did not become ready")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10, help="wrk duration per run (default 10)")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections (default 16)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1: the machine has 2 cores)")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--sizes", default="1,100", help="events per request, comma-separated (default 1,100)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench-collector: wrk is not installed (Debian package 'wrk')", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="leadflow-bench-collector-"))
    runs: list[Run] = []
    with EmbeddedBroker(log_dir=workdir / "broker") as broker:
        settings = from_env({}, bootstrap=broker.bootstrap, profile="tansu", topic_prefix="bench.",
                            partitions=args.partitions)
        ensure_topics(settings)
        port = free_port()
        # Throughput of one client: no abuse limits (bench_abuse.py measures them).
        config = CollectorConfig(port=port, write_keys={"website": (WRITE_KEY,)}, max_inflight=1024, key_limit=None,
                                 ip_limit=None)
        with collector_process(settings, config, workdir / "collector.log"):
            url = f"http://127.0.0.1:{port}/v1/events/website"
            for events in (int(size) for size in args.sizes.split(",")):
                payload = body(events)
                run_wrk(url, payload, events, args.connections, args.threads, 2, workdir)  # warm-up
                before = accepted_total(port)
                run = run_wrk(url, payload, events, args.connections, args.threads, args.seconds, workdir)
                counted = accepted_total(port) - before
                runs.append(run)
                print(f"{events:>3} events/request, {len(payload):,} bytes: {run.requests_per_second:,.0f} req/s "
                      f"= {run.events_per_second:,.0f} events/s; latency p50 {run.p50_ms:.1f} ms, p99 "
                      f"{run.p99_ms:.1f} ms; non-2xx {run.non_2xx}; socket errors {run.socket_errors}; "
                      f"accepted by metrics {counted:,.0f} (wrk counted {run.requests * events:,})", flush=True)
    parts = [
        f"{r.events_per_request} ev/req {r.requests_per_second:,.0f} req/s ({r.events_per_second:,.0f} ev/s) "
        f"p99 {r.p99_ms:.1f} ms" for r in runs
    ]
    print(f"bench-collector: {'; '.join(parts)} [{args.connections} connections, wrk -t{args.threads}, "
          f"{args.seconds} s each, Tansu, loopback, acks=all]")
    print(f"logs: {workdir}")
    return 1 if any(r.non_2xx for r in runs) else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark (not a test): the collector's abuse limits under a flood, with wrk.

``make bench-collector-abuse``. A collector process (defaults: per client address 20 requests/s,
bursts of 100; per write key 500/s, bursts of 1000; the website key only) behind one trusted
proxy hop, on the embedded broker. ``wrk`` floods ``POST /v1/events/website`` with the public
write key from one client address (``X-Forwarded-For: 203.0.113.7``) while a well-behaved client
(``198.51.100.2``) sends one event every 200 ms. Prints, for the flood: requests/s, how many were
answered 429 (the collector's ``leadflow_collector_rate_limited_total``) and 202; for the
well-behaved client: its statuses and its latency p50 / p99 next to a run without the flood.
Exits 1 if the well-behaved client got anything but 202.
"""

from __future__ import annotations

import argparse
import http.client
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import orjson
from bench_collector import collector_process

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.collector.config import CollectorConfig
from pipeline.config.settings import from_env
from pipeline.kafka.topics import ensure_topics
from pipeline.streaming.embedded_broker import EmbeddedBroker, free_port

WRITE_KEY = "pk_bench_000000000001"
FLOODER, CALM = "203.0.113.7", "198.51.100.2"


def _event(i: int) -> bytes:
    occurred = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 5))
    return orjson.dumps({"event_id": f"e{i}", "event_type": "page_view", "anonymous_id": f"a{i}",
                         "occurred_at": occurred, "properties": {"url": "https://shop.example/"}})


def calm_client(port: int, seconds: float, interval: float = 0.2) -> list[tuple[int, float]]:
    """One request every ``interval`` seconds for ``seconds``: ``(status, latency s)`` each."""
    results: list[tuple[int, float]] = []
    deadline, i = time.monotonic() + seconds, 0
    while time.monotonic() < deadline:
        started = time.perf_counter()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("POST", "/v1/events/website", _event(i),
                           {"Content-Type": "application/json", "Authorization": f"Bearer {WRITE_KEY}",
                            "X-Forwarded-For": CALM})
        status = connection.getresponse().status
        connection.close()
        results.append((status, time.perf_counter() - started))
        i += 1
        time.sleep(max(0.0, interval - (time.perf_counter() - started)))
    return results


def metric(port: int, pattern: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(float(v) for v in re.findall(pattern, text, re.MULTILINE))


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10, help="flood duration (default 10)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections of the flooder (default 16)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench-collector-abuse: wrk is not installed (Debian package 'wrk')", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="leadflow-bench-abuse-"))
    with EmbeddedBroker(log_dir=workdir / "broker") as broker:
        settings = from_env({}, bootstrap=broker.bootstrap, profile="tansu", topic_prefix="abuse.", partitions=4)
        ensure_topics(settings)
        port = free_port()
        config = CollectorConfig(port=port, write_keys={"website": (WRITE_KEY,)}, max_inflight=1024, trusted_proxies=1)
        with collector_process(settings, config, workdir / "collector.log"):
            quiet = calm_client(port, 3)  # the well-behaved client alone: its baseline latency
            body = workdir / "body.json"
            body.write_bytes(_event(0))
            script = workdir / "flood.lua"
            script.write_text(
                'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                f'wrk.headers["Authorization"] = "Bearer {WRITE_KEY}"\nwrk.headers["X-Forwarded-For"] = "{FLOODER}"\n'
                f'local f = io.open("{body}", "rb"); wrk.body = f:read("*a"); f:close()\n')
            limited_before = metric(port, r'^leadflow_collector_rate_limited_total\{.*\} (\S+)$')
            calm: list[tuple[int, float]] = []
            thread = threading.Thread(target=lambda: calm.extend(calm_client(port, args.seconds)))
            thread.start()
            output = subprocess.run(["wrk", "-t1", f"-c{args.connections}", f"-d{args.seconds}s", "--latency", "-s",
                                     str(script), f"http://127.0.0.1:{port}/v1/events/website"],
                                    capture_output=True, text=True, check=True).stdout
            thread.join()
            (workdir / "wrk.txt").write_text(output)
            limited = metric(port, r'^leadflow_collector_rate_limited_total\{.*\} (\S+)$') - limited_before
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    calm_ok = sum(1 for status, _ in calm if status == 202)
    lat = [seconds * 1000 for _, seconds in calm]
    base = [seconds * 1000 for _, seconds in quiet]
    print(f"flood ({FLOODER}, {args.connections} connections, {args.seconds} s): {requests:,} requests "
          f"({rate:,.0f}/s), {limited:,.0f} answered 429, {requests - limited:,.0f} accepted")
    print(f"well-behaved ({CALM}, 5 req/s): {calm_ok}/{len(calm)} answered 202; latency p50 "
          f"{percentile(lat, 50):.1f} ms, p99 {percentile(lat, 99):.1f} ms during the flood "
          f"(alone: p50 {percentile(base, 50):.1f} ms, p99 {percentile(base, 99):.1f} ms)")
    print(f"logs: {workdir}")
    return 0 if calm_ok == len(calm) else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Soak benchmark (not a test): the pipeline at a steady rate for a long time, to show nothing
grows without bound.

``make bench-soak`` (30 minutes on each broker, 200,000 contacts, 300 events/s) or, shorter,
``python benchmarks/bench_soak.py --minutes 3``. ``--broker`` picks the broker (``benchmarks/
brokers.py``): ``both`` (the default) soaks on the embedded Tansu broker, then on one Apache Kafka
node, in the same run, and ends with the two summaries side by side. For each it starts the
broker and one ``leadflow worker`` process (RocksDB store, wall-clock sweep), then publishes website and email
events of contacts drawn uniformly from ``--contacts`` ids at ``--rate`` events/s (kafka-python,
keyed by contact), and every ``--every`` seconds samples: the worker's resident memory
(``/proc/<pid>/status`` VmRSS), its consumer lag (sum of ``leadflow_consumer_lag``), the
processing latency p50 / p99 of that interval (from the deltas of
```leadflow_processing_latency_seconds`` buckets), events applied, contacts in its table, and the
CPU the worker and the broker used over the interval.
Writes ``soak.csv`` and ``soak.svg`` (three panels over time) to ``--out``/<broker> and prints a
summary:
memory at the start of the second half and at the end, its slope over the second half, the
largest lag, the worst interval p99.

Every process it starts (the broker, the worker) is stopped on any exit: the end of the run, an
exception, Ctrl-C, SIGTERM or SIGHUP (``loadgen.stop_on_signals``: a second signal during the
cleanup is ignored rather than cutting it short). The publisher, the metric parsing and the plot
are shared with the steady-load run of ``bench_stream.py`` (``benchmarks/loadgen.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import brokers
from loadgen import Publisher, buckets, cpu_seconds, quantile, rss_mb, scrape, stop_on_signals, svg_panels, total

from pipeline.config.settings import DEFAULT_ROCKSDB_WRITE_BUFFER_MB, from_env
from pipeline.config.topics import TopicNames
from pipeline.devtools.demo import wait_ready, worker_process
from pipeline.kafka.topics import ensure_topics
from pipeline.streaming.embedded_broker import free_port


@dataclass
class Sample:
    seconds: float
    rss_mb: float
    lag: float
    p50_ms: float
    p99_ms: float
    applied: float
    contacts: float
    published: int
    worker_cpu: float  # % of one core over the interval
    broker_cpu: float


def plot(samples: list[Sample], path: Path) -> None:
    """Three panels (memory, lag, latency p50/p99) over time, as a plain SVG."""
    path.write_text(svg_panels([s.seconds for s in samples], [
        ("resident memory (MB)", [("rss", [s.rss_mb for s in samples], "#1f77b4")]),
        ("consumer lag (messages)", [("lag", [s.lag for s in samples], "#d62728")]),
        ("processing latency (ms)", [("p99", [s.p99_ms for s in samples], "#ff7f0e"),
                                     ("p50", [s.p50_ms for s in samples], "#2ca02c")]),
    ]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--broker", choices=brokers.CHOICES, default="both",
                        help="the broker(s): both (default: Tansu, then Apache Kafka, in this run), tansu or kafka")
    parser.add_argument("--minutes", type=float, default=30.0, help="how long on each broker (default 30)")
    parser.add_argument("--contacts", type=int, default=200_000, help="distinct contacts (default 200,000)")
    parser.add_argument("--rate", type=float, default=300.0, help="events per second (default 300)")
    parser.add_argument("--write-buffer-mb", type=int, default=DEFAULT_ROCKSDB_WRITE_BUFFER_MB,
                        help="the worker's RocksDB memtable size per partition, MiB "
                             f"(LEADFLOW_ROCKSDB_WRITE_BUFFER_MB; default {DEFAULT_ROCKSDB_WRITE_BUFFER_MB})")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples (default 10)")
    parser.add_argument("--out", default=f"out/soak-{time.strftime('%Y%m%d-%H%M%S')}", help="output directory")
    args = parser.parse_args()
    stop_on_signals()  # SIGTERM / SIGHUP too: the with blocks below stop the worker, then the broker
    summaries: list[str] = []
    for kind in brokers.chosen(args.broker):
        out = (Path(args.out) / kind).resolve()  # the worker runs in a folder of its own
        out.mkdir(parents=True, exist_ok=True)
        samples: list[Sample] = []
        interrupted = False
        print(f"--- soak on {brokers.describe(kind)} ---", flush=True)
        try:
            run(args, kind, out, samples)
        except KeyboardInterrupt:
            interrupted = True
            print("\ninterrupted: the worker and the broker were stopped; writing what was sampled", file=sys.stderr)
        with open(out / "soak.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(list(Sample.__dataclass_fields__))
            writer.writerows([list(vars(s).values()) for s in samples])
        plot(samples, out / "soak.svg")
        if samples:
            summaries.append(summary(kind, args, samples))
            print(summaries[-1], flush=True)
        print(f"files: {out}/soak.csv, {out}/soak.svg, {out}/worker.log", flush=True)
        if interrupted:
            return 130
    if len(summaries) > 1:
        print("\n=== bench-soak, this run ===")
        print("\n".join(summaries))
    return 0


def summary(kind: str, args: argparse.Namespace, samples: list[Sample]) -> str:
    half = samples[len(samples) // 2:]
    minutes = (half[-1].seconds - half[0].seconds) / 60 or 1
    slope = (half[-1].rss_mb - half[0].rss_mb) / minutes
    median_broker = sorted(s.broker_cpu for s in samples)[len(samples) // 2]
    median_worker = sorted(s.worker_cpu for s in samples)[len(samples) // 2]
    return (f"bench-soak on {kind}: {args.minutes:g} min, {args.rate:g} ev/s, {args.contacts:,} contacts, "
            f"{args.write_buffer_mb} MiB memtables: rss "
            f"{half[0].rss_mb:.0f} MB at {half[0].seconds / 60:.1f} min -> {half[-1].rss_mb:.0f} MB at the end "
            f"({slope:+.2f} MB/min over the second half); max lag {max(s.lag for s in samples):.0f}; worst "
            f"interval p99 {max(s.p99_ms for s in samples):.0f} ms; median interval p99 "
            f"{sorted(s.p99_ms for s in samples)[len(samples) // 2]:.0f} ms; contacts {samples[-1].contacts:.0f}; "
            f"applied {samples[-1].applied:.0f} of {samples[-1].published} published; median cpu worker "
            f"{median_worker:.0f}% broker {median_broker:.0f}%")


def run(args: argparse.Namespace, kind: str, out: Path, samples: list[Sample]) -> None:
    """Broker, worker and publisher; every one of them is stopped however this returns."""
    with contextlib.ExitStack() as stack:
        broker = brokers.start(kind, out / "broker", stack)
        settings = from_env({}, bootstrap=broker.bootstrap, profile=kind, topic_prefix="soak.", app_id="soak",
                            replication_factor=broker.replication_factor, partitions=4, store="rocksdb",
                            data_dir=str(out / "data"), web_port=free_port(),
                            rocksdb_write_buffer_mb=args.write_buffer_mb)
        ensure_topics(settings)
        with worker_process(settings, out / "worker.log") as worker:
            wait_ready(settings.web_port, worker)
            publisher = Publisher(settings.bootstrap, TopicNames.of(settings).inputs, args.contacts, args.rate)
            try:
                publisher.start()
                started, previous = time.monotonic(), buckets(scrape(settings.web_port))
                assert broker.pid is not None
                cpu = {"worker": cpu_seconds(worker.pid), "broker": cpu_seconds(broker.pid), "at": time.monotonic()}
                while time.monotonic() - started < args.minutes * 60:
                    time.sleep(args.every)
                    if worker.poll() is not None:
                        raise RuntimeError(f"the worker exited with code {worker.returncode}; see {out}/worker.log")
                    text = scrape(settings.web_port)
                    now = buckets(text)
                    delta = [(b, n - dict(previous).get(b, 0.0)) for b, n in now]
                    previous = now
                    used = {"worker": cpu_seconds(worker.pid), "broker": cpu_seconds(broker.pid),
                            "at": time.monotonic()}
                    span = used["at"] - cpu["at"]
                    worker_cpu, broker_cpu = (round(100 * (used[k] - cpu[k]) / span, 1) for k in ("worker", "broker"))
                    cpu = used
                    sample = Sample(
                        seconds=round(time.monotonic() - started, 1), rss_mb=round(rss_mb(worker.pid), 1),
                        lag=total(text, "leadflow_consumer_lag"), p50_ms=quantile(delta, 0.5) * 1000,
                        p99_ms=quantile(delta, 0.99) * 1000, applied=total(text, "leadflow_events_applied_total"),
                        contacts=total(text, "leadflow_contacts"), published=publisher.published,
                        worker_cpu=worker_cpu, broker_cpu=broker_cpu,
                    )
                    samples.append(sample)
                    print(f"{sample.seconds / 60:5.1f} min  rss {sample.rss_mb:7.1f} MB  lag {sample.lag:7.0f}  "
                          f"p50 {sample.p50_ms:6.0f} ms  p99 {sample.p99_ms:6.0f} ms  applied {sample.applied:9.0f} "
                          f"(published {sample.published:9d})  contacts {sample.contacts:7.0f}  "
                          f"cpu worker {sample.worker_cpu:3.0f}% broker {sample.broker_cpu:3.0f}%", flush=True)
            finally:
                publisher.stopping.set()
                if publisher.is_alive():
                    publisher.join(30)


if __name__ == "__main__":
    raise SystemExit(main())

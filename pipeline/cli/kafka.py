"""``leadflow kafka``: Apache Kafka on this machine without Docker (KRaft, from Maven Central's jars).

For a contributor who wants the broker users run, as the tests start it: ``leadflow kafka`` fetches
``org.apache.kafka:kafka_2.13`` once with Maven (cached), formats and starts one node (or three
with ``--nodes 3``) on ``127.0.0.1``, prints the address and the settings to use, and stops the
nodes on Ctrl-C. The data stays in ``--data-dir`` between runs.
"""

from __future__ import annotations

import argparse
import signal
import threading

from pipeline.cli.common import EXIT_IO, EXIT_OK, CliError, Subparsers


def cmd_kafka(args: argparse.Namespace) -> int:
    from pipeline.streaming.local_kafka import LocalKafka, LocalKafkaError, fetch_jars, kafka_version

    version = kafka_version(args.version)
    try:
        libs = fetch_jars(version)
    except LocalKafkaError as exc:
        raise CliError(str(exc), EXIT_IO) from None
    if args.fetch:
        print(libs)
        return EXIT_OK
    kafka = LocalKafka(nodes=args.nodes, data_dir=args.data_dir, version=version, port=args.port, heap_mb=args.heap_mb)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        kafka.start()
    except LocalKafkaError as exc:
        kafka.stop(keep_data=True)
        raise CliError(f"{exc}", EXIT_IO) from None
    print(f"Apache Kafka {version}, {args.nodes} KRaft node(s), data in {kafka.data_dir}", flush=True)
    print(f"  bootstrap   {kafka.bootstrap}")
    print(
        f"  settings    LEADFLOW_KAFKA={kafka.bootstrap} LEADFLOW_BROKER_PROFILE=kafka "
        f"LEADFLOW_REPLICATION_FACTOR={kafka.replication_factor}"
    )
    print("Ctrl-C stops it.", flush=True)
    try:
        while not stop.wait(1.0):
            if not kafka.running:
                print(f"leadflow: a Kafka node exited; logs under {kafka.data_dir}")
                return EXIT_IO
    finally:
        kafka.stop(keep_data=True)
    return EXIT_OK


def register(subparsers: Subparsers) -> None:
    """Add ``kafka``."""
    kf = subparsers.add_parser(
        "kafka", help="run Apache Kafka on this machine (KRaft, jars from Maven Central, no Docker)"
    )
    kf.add_argument("--nodes", type=int, default=1, choices=(1, 3), help="1 node, or a 3-node cluster (replication 3)")
    kf.add_argument("--port", type=int, default=9092, help="node 1's port (node N: PORT + N - 1); default 9092")
    kf.add_argument(
        "--data-dir", default="./leadflow-kafka", help="where the nodes keep their logs (kept between runs)"
    )
    kf.add_argument("--version", help="Apache Kafka version (default: LEADFLOW_KAFKA_VERSION, else the pinned one)")
    kf.add_argument("--heap-mb", type=int, default=512, help="each node's Java heap")
    kf.add_argument("--fetch", action="store_true", help="only fetch the jars (cached) and print their folder")
    kf.set_defaults(func=cmd_kafka)

"""``leadflow demo``: a live demo on one machine (embedded broker, a worker, a journey simulator)."""

from __future__ import annotations

import argparse

from pipeline.cli.common import Subparsers


def cmd_demo(args: argparse.Namespace) -> int:
    from pipeline.devtools.demo import run_demo

    return run_demo(args)


def register(subparsers: Subparsers) -> None:
    """Add ``demo``."""
    dm = subparsers.add_parser("demo", help="live demo: embedded broker, a worker and a journey simulator")
    dm.add_argument("--kafka", metavar="SERVERS", help="use this Kafka instead of the embedded broker")
    dm.add_argument("--contacts", type=int, default=300)
    dm.add_argument("--rate", type=float, default=400.0, help="events per second published")
    dm.add_argument("--quiet", action="store_true", help="print the summary only")
    dm.set_defaults(func=cmd_demo)

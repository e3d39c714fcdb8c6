"""The ``leadflow`` command line: replay, model tools and the sample generator.

Exit codes: 0 success; 1 an I/O error (a file that cannot be read or written); 2 a usage error or
an invalid model. Bad *events* never change the exit code: they become dead letters.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .state_machine import LifecycleError, Model, resolve_model
from .state_machine.clock import parse_rfc3339

EXIT_IO = 1
EXIT_USAGE = 2


class CliError(Exception):
    """A problem the user must fix; printed as ``leadflow: <message>``."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def _now_micros() -> int:
    return time.time_ns() // 1000


def _model(spec: str | None) -> Model:
    try:
        return resolve_model(spec)
    except LifecycleError as exc:
        raise CliError(str(exc)) from exc


def _rfc3339(text: str) -> int:
    try:
        return parse_rfc3339(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 timestamp with offset: {text!r}") from exc


def cmd_replay(args: argparse.Namespace) -> int:
    from .replay import ReplayStats, format_summary, replay_files

    model = _model(args.model)
    interactive = sys.stderr.isatty()

    def progress(stats: ReplayStats) -> None:
        if interactive:
            rate = stats.read / stats.seconds if stats.seconds else 0
            print(f"\r  {stats.read:,} events read ({rate:,.0f}/s)", end="", file=sys.stderr, flush=True)

    outputs = [p for p in (args.out, args.alerts, args.deadletter, args.contacts) if p == "-"]
    if len(outputs) > 1:
        raise CliError("at most one output may be '-' (stdout)")
    try:
        stats = replay_files(
            args.events,
            model,
            received_at=_now_micros(),
            until=args.until,
            out=args.out,
            alerts=args.alerts,
            deadletter=args.deadletter,
            contacts=args.contacts,
            progress=progress,
        )
    except OSError as exc:
        raise CliError(f"{exc.filename or args.events}: {exc.strerror or exc}", EXIT_IO) from exc
    if interactive:
        print("\r" + " " * 60 + "\r", end="", file=sys.stderr)
    print(format_summary(stats, model), file=sys.stderr)
    if args.summary_json:
        import json

        Path(args.summary_json).write_text(json.dumps(stats.as_dict(), indent=2) + "\n", encoding="utf-8")
    return 0


def cmd_model_validate(args: argparse.Namespace) -> int:
    model = _model(args.file)
    print(
        f"{args.file}: valid model {model.label}: {len(model.stages)} stages, {len(model.advances)} advances, "
        f"{len(model.regressions)} cooling rules, {len(model.bands)} temperature bands"
    )
    return 0


def cmd_model_diagram(args: argparse.Namespace) -> int:
    from .state_machine.diagram import mermaid

    print(mermaid(_model(args.file)), end="")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from .simulator import simulate, with_faults

    lines = with_faults(simulate(contacts=args.contacts, seed=args.seed), seed=args.seed)
    data = b"\n".join(lines) + b"\n"
    if args.output == "-":
        sys.stdout.buffer.write(data)
    else:
        try:
            Path(args.output).write_bytes(data)
        except OSError as exc:
            raise CliError(f"{args.output}: {exc.strerror}", EXIT_IO) from exc
        print(f"wrote {len(lines)} lines for {args.contacts} contacts to {args.output}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="leadflow", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("replay", help="replay a JSONL file of events through the lifecycle model")
    p.add_argument("events", metavar="EVENTS.jsonl", help="one event envelope with a 'source' per line; - = stdin")
    p.add_argument("--model", metavar="FILE", help="model file, or a built-in name: default, b2b")
    p.add_argument("--out", metavar="FILE", help="write transitions (JSONL); - = stdout")
    p.add_argument("--alerts", metavar="FILE", help="write became_hot alerts (JSONL)")
    p.add_argument("--deadletter", metavar="FILE", help="write rejected lines with their reasons (JSONL)")
    p.add_argument("--contacts", metavar="FILE", help="write each contact's final state (JSONL)")
    p.add_argument("--until", metavar="RFC3339", type=_rfc3339, help="at the end, fire cooling due up to this time")
    p.add_argument("--summary-json", metavar="FILE", help="also write the summary as JSON")
    p.set_defaults(func=cmd_replay)

    model = sub.add_parser("model", help="check or draw a lifecycle model").add_subparsers(
        dest="model_command", required=True, metavar="ACTION"
    )
    v = model.add_parser("validate", help="load a model file and report every problem")
    v.add_argument("file", metavar="FILE")
    v.set_defaults(func=cmd_model_validate)
    d = model.add_parser("diagram", help="print a Mermaid state diagram of a model (default: the built-in)")
    d.add_argument("file", metavar="FILE", nargs="?")
    d.set_defaults(func=cmd_model_diagram)

    s = sub.add_parser("sample", help="generate realistic journeys as a replayable JSONL file")
    s.add_argument("output", metavar="FILE", help="- = stdout")
    s.add_argument("--contacts", type=int, default=300)
    s.add_argument("--seed", type=int, default=7)
    s.set_defaults(func=cmd_sample)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except CliError as exc:
        print(f"leadflow: {exc}", file=sys.stderr)
        return exc.code
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())

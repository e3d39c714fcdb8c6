"""Benchmark: `leadflow replay` throughput against an orjson parse-only ceiling on the same file.

    make bench            # 1M events
    python benchmarks/bench_replay.py --events 200000 --profile

Both passes read the same generated JSONL file in the same run; the ratio is what to compare
between machines and commits (absolute numbers move with the machine's load). The replay also runs
with the default model stripped of its ``[segments]`` (value segments, issue 14), alternating with
the full model, so the cost of the third axis is a ratio of the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import dataclasses
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

import orjson

from pipeline.devtools.simulator import simulate, with_faults
from pipeline.offline.replay import read_lines, replay
from pipeline.state_machine import builtin_model

DATA = Path(__file__).resolve().parent.parent / "bench-data"


def generate(events: int) -> Path:
    path = DATA / f"events-{events}.jsonl"
    if path.exists():
        return path
    DATA.mkdir(exist_ok=True)
    contacts = max(100, events // 10)
    lines: list[bytes] = []
    seed = 1
    while len(lines) < events:
        lines.extend(with_faults(simulate(contacts=contacts, seed=seed, span_days=365), seed=seed))
        seed += 1
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(b"\n".join(lines[:events]) + b"\n")
    tmp.rename(path)
    return path


def ceiling(path: Path) -> float:
    started = time.perf_counter()
    with open(path, "rb") as stream:
        for line in read_lines(stream):
            with contextlib.suppress(orjson.JSONDecodeError):  # the deliberately broken lines
                orjson.loads(line)
    return time.perf_counter() - started


def run_replay(path: Path, outdir: str, segments: bool = True) -> tuple[float, int]:
    model = builtin_model()
    if not segments:
        model = dataclasses.replace(model, segments=None)  # the same model without the value axis
    started = time.perf_counter()
    with open(path, "rb") as stream, open(os.path.join(outdir, "t.jsonl"), "wb") as out, \
            open(os.path.join(outdir, "a.jsonl"), "wb") as alerts, \
            open(os.path.join(outdir, "d.jsonl"), "wb") as dead:
        stats = replay(read_lines(stream), model, received_at=time.time_ns() // 1000,
                       out=out, alerts=alerts, deadletter=dead)
    return time.perf_counter() - started, stats.read


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--profile", action="store_true", help="profile the replay pass (cProfile)")
    parser.add_argument("--segment-rounds", type=int, default=2,
                        help="alternating replays without and with the model's [segments] (2; 0 = skip)")
    args = parser.parse_args()
    path = generate(args.events)
    with tempfile.TemporaryDirectory() as outdir:
        ceiling(path)  # warm the page cache
        parse_s = min(ceiling(path) for _ in range(3))  # the ceiling at its best: a conservative ratio
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
        replay_s, read = run_replay(path, outdir)
        if args.profile:
            profiler.disable()
            pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(25)
        with_runs, without_runs = [replay_s], []
        for _ in range(args.segment_rounds):
            without_runs.append(run_replay(path, outdir, segments=False)[0])
            with_runs.append(run_replay(path, outdir)[0])
    parse_rate, replay_rate = read / parse_s, read / replay_s
    print(f"file: {path.name} ({read:,} lines)")
    print(f"ceiling (orjson parse only): {parse_rate:12,.0f} events/s")
    print(f"leadflow replay:             {replay_rate:12,.0f} events/s")
    print(f"ratio replay/ceiling:        {replay_rate / parse_rate:12.3f}   (issue 12 goal >= 0.12)")
    if without_runs:
        with_rate, without_rate = read / min(with_runs), read / min(without_runs)
        print(f"replay without [segments]:   {without_rate:12,.0f} events/s   (best of {len(without_runs)})")
        print(f"replay with [segments]:      {with_rate:12,.0f} events/s   (best of {len(with_runs)})")
        print(f"ratio with/without segments: {with_rate / without_rate:12.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Bytes per contact: the serialized state (changelog / RocksDB value) and the in-memory state.

    python benchmarks/bench_state_size.py [--events N]

Replays generated journeys, then measures every contact's MessagePack state and, with tracemalloc,
the memory the states take in a dict (the memory store of a worker).
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc

from bench_replay import generate

from pipeline.offline.replay import read_lines, replay
from pipeline.state_machine import ContactState, builtin_model, decode_state, encode_state


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()
    path = generate(args.events)
    states: dict[str, ContactState] = {}
    with open(path, "rb") as stream:
        replay(read_lines(stream), builtin_model(), received_at=time.time_ns() // 1000, keep_states=states)
    encoded = [encode_state(s) for s in states.values()]
    sizes = sorted(len(e) for e in encoded)
    events = sorted(s.events_applied for s in states.values())
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    in_memory = {s.contact: decode_state(e) for s, e in zip(states.values(), encoded, strict=True)}
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    n = len(in_memory)
    print(f"contacts: {n:,} (events per contact: median {statistics.median(events):.0f}, max {events[-1]})")
    print(f"serialized state bytes: median {statistics.median(sizes):.0f}, mean {statistics.fmean(sizes):.0f}, "
          f"p95 {sizes[int(0.95 * (n - 1))]}, max {sizes[-1]}")
    print(f"in-memory bytes per contact (state + key + dict slot): {(after - before) / n:,.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``kill -USR1 <worker pid>``: the stack of every asyncio task, written to standard error.

For an operator (or a test) to see where a process that stopped making progress is waiting: a
thread dump (py-spy) shows only the idle event loop; this shows the coroutines waiting on it.
"""

from __future__ import annotations

import asyncio
import io
import signal
import sys
from types import FrameType


def _dump(signum: int, frame: FrameType | None) -> None:
    try:
        loop = asyncio.get_event_loop()
        tasks = asyncio.all_tasks(loop)
    except RuntimeError:
        return
    out = io.StringIO()
    out.write(f"--- {len(tasks)} asyncio tasks (SIGUSR1) ---\n")
    for task in tasks:
        out.write(f"{task!r}\n")
        task.print_stack(limit=12, file=out)
    out.write("--- end of tasks ---\n")
    sys.stderr.write(out.getvalue())
    sys.stderr.flush()


def install() -> None:
    """Dump the tasks on SIGUSR1 (from the main thread; a no-op where the signal does not exist)."""
    if hasattr(signal, "SIGUSR1"):
        signal.signal(signal.SIGUSR1, _dump)

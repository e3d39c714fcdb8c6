"""``leadflow up`` as a test fixture: started as a real process tree, its banner parsed, its
children's pids known, stopped with SIGINT (or killed)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.streaming.embedded_broker import free_port


@dataclass
class UpProcess:
    process: subprocess.Popen[bytes]
    out: Path
    console_port: int
    collector_port: int
    site_origin: str
    ready_seconds: float = 0.0

    @property
    def console(self) -> str:
        return f"http://127.0.0.1:{self.console_port}"

    @property
    def collector(self) -> str:
        return f"http://127.0.0.1:{self.collector_port}"

    def text(self) -> str:
        return self.out.read_text(errors="replace")

    def write_key(self, source: str) -> str:
        found = re.search(rf"{source}:((?:pk|sk)_dev_[0-9a-f]+)", self.text())
        assert found, self.text()
        return found.group(1)

    def descendants(self) -> set[int]:
        """Every live process whose parent chain leads to ``leadflow up`` (sessions do not matter)."""
        parents: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    stat = (entry / "stat").read_text()
                    parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        found: set[int] = set()
        frontier = {self.process.pid}
        while frontier:
            children = {pid for pid, ppid in parents.items() if ppid in frontier} - found
            found |= children
            frontier = children
        return found


def alive(pids: set[int]) -> set[int]:
    """The pids of ``pids`` that are still running (zombies count as gone)."""
    running = set()
    for pid in pids:
        with contextlib.suppress(OSError, IndexError):
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if state != "Z":
                running.add(pid)
    return running


@contextlib.contextmanager
def leadflow_up(workdir: Path, site_origin: str, timeout: float = 120.0) -> Iterator[UpProcess]:
    """``leadflow up`` on free ports into ``workdir``; yields once it printed that it is up."""
    console_port, collector_port = free_port(), free_port()
    out = workdir / "up.out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
    started = time.monotonic()
    with open(out, "wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "up", "--port", str(console_port), "--collector-port",
             str(collector_port), "--data-dir", str(workdir / "data"), "--db", f"sqlite:///{workdir / 'up.db'}",
             "--origin", site_origin],
            stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=workdir,
        )
    up = UpProcess(process, out, console_port, collector_port, site_origin)
    try:
        while "Leadflow is up" not in up.text():
            if process.poll() is not None or time.monotonic() - started > timeout:
                raise AssertionError(f"leadflow up did not come up:\n{up.text()}")
            time.sleep(0.1)
        up.ready_seconds = time.monotonic() - started
        yield up
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

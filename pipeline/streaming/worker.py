"""Run a streaming worker in this process until it is stopped (SIGINT / SIGTERM)."""

from __future__ import annotations

import logging
from pathlib import Path

from faust.worker import Worker as FaustWorker

from pipeline.config.settings import Settings
from pipeline.streaming.app import build_worker


def run_worker(settings: Settings, loglevel: str = "info") -> int:
    """Build the Faust app for ``settings`` and run it; returns the process exit code."""
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    worker = build_worker(settings)
    logging.getLogger("leadflow").setLevel(loglevel.upper())
    faust_worker = FaustWorker(
        worker.app,
        loglevel=loglevel,
        quiet=True,
        redirect_stdouts=False,
        workdir=settings.data_dir,
    )
    faust_worker.execute_from_commandline()  # returns only by raising SystemExit
    return 0

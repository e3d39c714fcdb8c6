"""The ``leadflow`` command line: one module per command group (see :mod:`pipeline.cli.main`)."""

from pipeline.cli.main import main

__all__ = ["main"]

"""The ``leadflow`` command line: one module per command group; :mod:`pipeline.cli.main` builds the
parser, lists every command and the exit codes; :mod:`pipeline.cli.common` holds what they share."""

from pipeline.cli.main import main

__all__ = ["main"]

"""Errors of the lifecycle core: one base class, precise subclasses.

Bad *events* are never exceptions (they become dead letters at the edge); these errors are for
bad *models*, which must be fixed by whoever wrote the model file.
"""

from __future__ import annotations


class LifecycleError(Exception):
    """Base class of every error raised by :mod:`pipeline.state_machine`."""


class ModelError(LifecycleError):
    """A lifecycle model file is invalid. The message names the file, the entry and the fix."""

    def __init__(self, path: str, entry: str, problem: str) -> None:
        self.path = path
        self.entry = entry
        self.problem = problem
        super().__init__(f"{path}: {entry}: {problem}")

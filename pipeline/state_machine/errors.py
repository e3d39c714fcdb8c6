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


class SealedContactError(LifecycleError):
    """An event was applied to an anonymous contact already merged into another contact.

    A caller bug, not bad input: the processor forwards such events to ``merged_into``
    (:func:`pipeline.state_machine.identity.owner_of`); a runtime driving ``decide`` itself must too.
    """

    def __init__(self, contact: str, merged_into: str, event_id: str) -> None:
        self.contact = contact
        self.merged_into = merged_into
        self.event_id = event_id
        super().__init__(
            f"event {event_id!r}: contact {contact!r} was merged into {merged_into!r}; apply it to {merged_into!r}"
        )

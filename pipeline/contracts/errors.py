"""Errors of the contracts layer: one base class, precise subclasses.

Bad *input* is never an exception here: it becomes a :class:`~pipeline.contracts.DeadLetter`.
These errors are for callers that use the API wrongly (an unknown family, an unknown error code)
and for schema files that cannot be found.
"""

from __future__ import annotations


class ContractError(Exception):
    """Base class of every error raised by :mod:`pipeline.contracts`."""


class UnknownFamilyError(ContractError, ValueError):
    """``family`` is not one of the input families (a wiring bug: check the topic mapping)."""

    def __init__(self, family: str, allowed: tuple[str, ...]) -> None:
        self.family = family
        super().__init__(f"unknown event family {family!r}; use one of {', '.join(allowed)} (or None in replay)")


class UnknownErrorCodeError(ContractError, ValueError):
    """A dead letter was built with an error code the contract does not define."""

    def __init__(self, code: str, allowed: tuple[str, ...]) -> None:
        self.code = code
        super().__init__(f"unknown dead-letter error code {code!r}; use one of {', '.join(allowed)}")


class SchemaFileError(ContractError):
    """A schema file is missing or is not valid JSON (run from a source checkout)."""

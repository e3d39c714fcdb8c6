"""Reading ``LEADFLOW_*`` environment variables: one parser per kind of value.

Every process (the worker, the collector, the webhooks process) reads its variables through an
:class:`EnvReader`, so a variable means the same thing and fails the same way everywhere: an empty
or unset variable takes the default, and a value that cannot be used raises :class:`SettingsError`
(or the caller's subclass of it) with the variable's name, the value and what to write instead.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import overload

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
DURATION_UNITS = {"s": 1.0, "ms": 0.001}


class SettingsError(ValueError):
    """An environment variable has a value Leadflow cannot use; the message names it."""


class EnvReader:
    """Typed values of one environment (``os.environ`` unless given); errors raise ``error``."""

    __slots__ = ("env", "error")

    def __init__(self, env: Mapping[str, str] | None = None, error: type[SettingsError] = SettingsError) -> None:
        self.env: Mapping[str, str] = os.environ if env is None else env
        self.error = error

    def raw(self, name: str) -> str:
        """The variable's value without surrounding whitespace; ``""`` when unset."""
        return (self.env.get(name) or "").strip()

    @overload
    def text(self, name: str, default: str) -> str: ...
    @overload
    def text(self, name: str, default: None = None) -> str | None: ...
    def text(self, name: str, default: str | None = None) -> str | None:
        """A free-form string (an address, a path, a prefix); ``default`` when unset or empty."""
        return self.raw(name) or default

    @overload
    def integer(self, name: str, default: int, *, minimum: int = 0) -> int: ...
    @overload
    def integer(self, name: str, default: None, *, minimum: int = 0) -> int | None: ...
    def integer(self, name: str, default: int | None, *, minimum: int = 0) -> int | None:
        """A whole number of at least ``minimum``."""
        raw = self.raw(name)
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise self.error(f"{name}={raw!r} is not an integer") from None
        if value < minimum:
            raise self.error(f"{name}={raw!r} must be at least {minimum}")
        return value

    def number(self, name: str, default: float, *, minimum: float = 0.0, positive: bool = False) -> float:
        """A decimal number of at least ``minimum`` (greater than 0 with ``positive``)."""
        raw = self.raw(name)
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise self.error(f"{name}={raw!r} is not a number") from None
        if positive and not value > 0:
            raise self.error(f"{name}={raw!r} must be greater than 0")
        if not value >= minimum:  # also rejects nan
            raise self.error(f"{name}={raw!r} must be at least {minimum:g}")
        return value

    def duration(self, name: str, default: float, *, unit: str = "s", positive: bool = False) -> float:
        """A length of time written in ``unit`` (``s`` or ``ms``), returned in seconds.
        ``default`` is in ``unit`` too, like the variable."""
        return self.number(name, default, positive=positive) * DURATION_UNITS[unit]

    def port(self, name: str, default: int) -> int:
        """A TCP port number (0 lets the system choose one)."""
        value = self.integer(name, default)
        if value > 65_535:
            raise self.error(f"{name}={value} is not a port number: use 0 to 65535")
        return value

    def flag(self, name: str, default: bool) -> bool:
        """On or off: ``1/true/yes/on`` or ``0/false/no/off`` (any case)."""
        raw = self.raw(name).lower()
        if not raw:
            return default
        if raw in TRUE_WORDS:
            return True
        if raw in FALSE_WORDS:
            return False
        raise self.error(f"{name}={raw!r}: use {'/'.join(TRUE_WORDS)} or {'/'.join(FALSE_WORDS)}")

    def choice(self, name: str, allowed: tuple[str, ...], default: str) -> str:
        """One of ``allowed``, spelt exactly."""
        value = self.raw(name) or default
        if value not in allowed:
            raise self.error(f"{name}={value!r}: choose one of {', '.join(allowed)}")
        return value

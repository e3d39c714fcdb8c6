"""Settings of the console process (``leadflow console``) and the rule that guards its address.

Bound to a loopback address the console needs no credentials (only this machine reaches it).
Bound anywhere else it refuses to start unless a token (``LEADFLOW_CONSOLE_TOKEN``) or a user and
password (``LEADFLOW_CONSOLE_USER`` / ``LEADFLOW_CONSOLE_PASSWORD``, HTTP basic auth) is set.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from pipeline.config.env import EnvReader, SettingsError

TOKEN_ENV = "LEADFLOW_CONSOLE_TOKEN"
USER_ENV = "LEADFLOW_CONSOLE_USER"
PASSWORD_ENV = "LEADFLOW_CONSOLE_PASSWORD"
SALES_KEY_ENV = "LEADFLOW_CONSOLE_SALES_KEY"  # write key of the collector's sales source


class ConsoleConfigError(SettingsError):
    """The console cannot start with these settings; the message says what to set."""


def is_loopback(bind: str) -> bool:
    """True for ``localhost`` and loopback addresses (``127.0.0.0/8``, ``::1``)."""
    if bind == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class ConsoleConfig:
    """What the console serves and where it reads from."""

    db_url: str
    bind: str = "127.0.0.1"
    port: int = 8088
    #: The collector's base URL (``http://127.0.0.1:8080``): the "answered" action posts there.
    collector_url: str | None = None
    sales_key: str | None = None
    #: Process name -> its ``/metrics`` URL, scraped for the Pipeline page.
    metrics: Mapping[str, str] = field(default_factory=dict)
    token: str | None = None
    user: str | None = None
    password: str | None = None
    model: str | None = None
    refresh_seconds: float = 1.0

    @property
    def needs_credentials(self) -> bool:
        return not is_loopback(self.bind)

    def check(self) -> None:
        """Raise :class:`ConsoleConfigError` when the console must not start like this."""
        if (self.user is None) != (self.password is None):
            raise ConsoleConfigError(f"set both {USER_ENV} and {PASSWORD_ENV} (HTTP basic auth), or neither")
        if self.token is not None and len(self.token) < 16:
            raise ConsoleConfigError(f"{TOKEN_ENV} is shorter than 16 characters")
        if self.needs_credentials and self.token is None and self.user is None:
            raise ConsoleConfigError(
                f"the console is bound to {self.bind}, not a loopback address: set {TOKEN_ENV} "
                f"(or {USER_ENV} and {PASSWORD_ENV}) so that not everyone on the network can read it"
            )


def credentials_from_env(env: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """The console's credentials and sales write key from the environment (not the command line:
    other users of the machine can read a process's arguments)."""
    read = EnvReader(env, ConsoleConfigError)
    return {
        "token": read.text(TOKEN_ENV),
        "user": read.text(USER_ENV),
        "password": read.text(PASSWORD_ENV),
        "sales_key": read.text(SALES_KEY_ENV),
    }

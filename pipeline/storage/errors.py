"""Storage errors: one base class, precise subclasses, messages that say what to fix."""

from __future__ import annotations


class StorageError(Exception):
    """Base of every error raised by :mod:`pipeline.storage`."""


class InvalidDatabaseUrl(StorageError):
    """The database URL cannot be used (unknown scheme, missing driver, malformed)."""

    def __init__(self, url: str, problem: str) -> None:
        super().__init__(
            f"database URL {url!r}: {problem} "
            "(expected sqlite:///FILE, postgresql://USER@HOST:PORT/DATABASE or memory://NAME)"
        )
        self.url = url


class StorageUnavailable(StorageError):
    """The database cannot be reached or the connection was lost; the batch was not written.

    Retrying the same batch later is safe: every write is idempotent.
    """

    def __init__(self, url: str, detail: str) -> None:
        super().__init__(f"database {url} is unavailable: {detail}")
        self.url = url


class SchemaNotReady(StorageError):
    """The database has no Leadflow tables yet, or an older revision of them."""

    def __init__(self, url: str, current: str | None, head: str) -> None:
        state = "has no Leadflow tables" if current is None else f"is at schema revision {current}"
        super().__init__(
            f"database {url} {state}, expected revision {head}: run `leadflow db upgrade --db {url}`"
        )
        self.url = url
        self.current = current
        self.head = head


class UnknownAlert(StorageError):
    """``acknowledge`` was given an alert id that is not stored."""

    def __init__(self, alert_id: str) -> None:
        super().__init__(f"no alert with id {alert_id!r} in the database (check the id in `leadflow contact`)")
        self.alert_id = alert_id


class InvalidAcknowledgement(StorageError):
    """An acknowledgement time before the alert was raised."""

    def __init__(self, alert_id: str, at: str, occurred_at: str) -> None:
        super().__init__(
            f"alert {alert_id} was raised at {occurred_at}; it cannot be acknowledged earlier, at {at}"
        )
        self.alert_id = alert_id

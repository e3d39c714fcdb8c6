"""Schema migrations, run programmatically (no ``alembic.ini``): ``leadflow db upgrade``.

The Alembic environment and revisions live in ``pipeline/storage/sql/migrations``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

from pipeline.storage.database import safe_url
from pipeline.storage.errors import SchemaNotReady
from pipeline.storage.sql.engine import open_engine, translate_errors

MIGRATIONS = Path(__file__).with_name("migrations")


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


@cache
def head_revision() -> str:
    """The newest schema revision this code knows."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships revisions
        raise RuntimeError(f"no migrations found in {MIGRATIONS}")
    return head


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at; None when it has no Leadflow tables."""
    return MigrationContext.configure(connection).get_current_revision()


def upgrade_engine(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Upgrade the schema behind ``engine`` to ``revision``; returns (before, after)."""
    config = _config()
    with engine.begin() as connection:
        before = current_revision(connection)
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        after = current_revision(connection)
    return before, after


def upgrade_sql_database(url: str, revision: str = "head") -> tuple[str | None, str | None]:
    """Create or upgrade the history tables at ``url`` (idempotent); returns (before, after)."""
    engine = open_engine(url)
    try:
        with translate_errors(url):
            return upgrade_engine(engine, revision)
    finally:
        engine.dispose()


def require_current_schema(engine: Engine, url: str) -> None:
    """Raise :class:`SchemaNotReady` unless the database is at :func:`head_revision`."""
    with translate_errors(url), engine.connect() as connection:
        current = current_revision(connection)
    if current != head_revision():
        raise SchemaNotReady(safe_url(url), current, head_revision())

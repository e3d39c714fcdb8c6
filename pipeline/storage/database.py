"""History URLs: ``--db`` / ``LEADFLOW_DB``, which backend a URL names, its driver, its display form.

``sqlite:///FILE`` (the embedded default, ``sqlite:///leadflow.db``), ``postgresql://`` and
``postgres://`` (psycopg 3: ``postgresql+psycopg://``; an explicit driver in the URL is kept), and
``memory://NAME`` (the in-memory adapter, this process only). Engines are in
:mod:`pipeline.storage.sql.engine`.
"""

from __future__ import annotations

import os

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

DEFAULT_URL = "sqlite:///leadflow.db"
ENV_VAR = "LEADFLOW_DB"
MEMORY_SCHEME = "memory://"


def resolve_url(url: str | None) -> str:
    """The URL to use: the argument, else ``$LEADFLOW_DB``, else :data:`DEFAULT_URL`."""
    return url or os.environ.get(ENV_VAR) or DEFAULT_URL


def is_memory_url(url: str) -> bool:
    """Whether ``url`` names the in-memory adapter (``memory://NAME``)."""
    return url.startswith(MEMORY_SCHEME)


def driver_url(url: str) -> str:
    """``url`` with the driver Leadflow uses for its dialect (psycopg 3 for PostgreSQL)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def safe_url(url: str) -> str:
    """``url`` with any password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sa_exc.ArgumentError:
        return url

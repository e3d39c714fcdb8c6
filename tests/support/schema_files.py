"""The JSON Schema files in ``schemas/``, loaded with a local registry (no network).

For tests and tools that validate records against the files (jsonschema is a dev dependency,
imported only here, when a validator is asked for). The files live at the repository root, so
this works from a source checkout or an editable install.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from pipeline.contracts.errors import SchemaFileError

#: Where the schema files are.
SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"

#: Every schema file by short name (``website-event`` -> ``schemas/website-event.v1.json``).
SCHEMA_NAMES: tuple[str, ...] = (
    "envelope",
    "website-event",
    "email-event",
    "purchase-event",
    "sales-event",
    "event",
    "transition",
    "alert",
    "deadletter",
    "contact",
)


@cache
def load_schema(name: str) -> dict[str, Any]:
    """The parsed schema ``schemas/<name>.v1.json`` (cached and shared: do not modify it)."""
    path = SCHEMA_DIR / f"{name}.v1.json"
    try:
        schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        problem = f"cannot read the schema file ({exc.strerror}); run from a source checkout"
        raise SchemaFileError(f"{path}: {problem}") from exc
    except ValueError as exc:
        raise SchemaFileError(f"{path}: not valid JSON: {exc}") from exc
    return schema


def schema_registry() -> Any:
    """A ``referencing.Registry`` holding every schema file under its ``$id``."""
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    resources = [
        (load_schema(name)["$id"], Resource.from_contents(load_schema(name), default_specification=DRAFT202012))
        for name in SCHEMA_NAMES
    ]
    return Registry().with_resources(resources)


def schema_validator(name: str) -> Any:
    """A ``jsonschema.Draft202012Validator`` for ``name`` with format checking and local ``$ref``s."""
    from jsonschema import Draft202012Validator

    return Draft202012Validator(
        load_schema(name),
        registry=schema_registry(),
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )

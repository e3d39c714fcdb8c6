"""The command line's layout: one module per command group that imports only
:mod:`pipeline.cli.common` (never :mod:`pipeline.cli.main`, never another module's private names),
exit codes defined once, and the docstring of :mod:`pipeline.cli.main` listing every command."""

from __future__ import annotations

import argparse
import ast
import importlib
import re
from pathlib import Path

import pytest

from pipeline.cli import common
from pipeline.cli.main import REGISTRARS, build_parser

CLI = Path(common.__file__).resolve().parent
PIPELINE = CLI.parent
#: The package's entry: ``leadflow = pipeline.cli:main`` and ``python -m pipeline.cli``.
ENTRY = {"__init__", "__main__"}
COMMON = "pipeline.cli.common"


def cli_modules() -> dict[str, str]:
    return {path.stem: path.read_text("utf-8") for path in sorted(CLI.glob("*.py"))}


def cli_imports(source: str) -> list[tuple[str, str]]:
    """``(module, name)`` for every import of a ``pipeline.cli`` module or name, at any depth
    (``name`` is ``""`` for ``import pipeline.cli.x``)."""
    found: list[tuple[str, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(alias.name, "") for alias in node.names if alias.name.startswith("pipeline.cli")]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pipeline.cli"):
            found += [(node.module or "", alias.name) for alias in node.names]
    return found


def problems(name: str, source: str) -> list[str]:
    """What breaks the layout in module ``pipeline.cli.<name>``."""
    found = []
    for module, imported in cli_imports(source):
        target = f"{module}.{imported}" if module == "pipeline.cli" and imported else module
        if name not in ENTRY and (target == "pipeline.cli.main" or module == "pipeline.cli.main"):
            found.append(f"{name} imports pipeline.cli.main")
        if imported.startswith("_"):
            found.append(f"{name} imports the private {imported} of {module}")
        if name == "common" and target != COMMON:
            found.append(f"common imports {target}: it must not depend on any command")
        if name not in ENTRY | {"main", "common"} and target != COMMON:
            found.append(f"{name} imports {target}: a command module imports only {COMMON}")
    modules = {alias.asname or alias.name for node in ast.walk(ast.parse(source))
               if isinstance(node, ast.ImportFrom) and node.module == "pipeline.cli" for alias in node.names}
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            found.append(f"{name} uses the private {node.value.id}.{node.attr}")
    return found


def test_no_module_imports_main_or_private_names_of_another() -> None:
    assert [p for name, source in cli_modules().items() for p in problems(name, source)] == []


def test_the_checker_finds_what_it_forbids() -> None:
    assert problems("storage", "def f():\n    from pipeline.cli.main import CliError\n") == [
        "storage imports pipeline.cli.main", "storage imports pipeline.cli.main: a command module imports only "
        "pipeline.cli.common"]
    assert problems("webhooks", "from pipeline.cli.common import _settings\n") == [
        "webhooks imports the private _settings of pipeline.cli.common"]
    assert problems("replay", "from pipeline.cli.storage import parse_bound\n") == [
        "replay imports pipeline.cli.storage: a command module imports only pipeline.cli.common"]
    assert problems("main", "from pipeline.cli import storage\nstorage._open_store(None)\n") == [
        "main uses the private storage._open_store"]
    assert problems("common", "import pipeline.cli.main\n") == [
        "common imports pipeline.cli.main", "common imports pipeline.cli.main: it must not depend on any command"]
    assert problems("__main__", "from pipeline.cli import main\n") == []


def test_every_command_module_registers_and_says_what_it_is_for() -> None:
    commands = set(cli_modules()) - ENTRY - {"main", "common"}
    assert {r.__module__.rpartition(".")[2] for r in REGISTRARS} == commands
    for name, source in cli_modules().items():
        assert ast.get_docstring(ast.parse(source)), f"pipeline/cli/{name}.py has no module docstring"


def test_exit_codes_are_defined_once() -> None:
    defined = [
        f"{path.relative_to(PIPELINE.parent)}:{node.lineno} {target.id}"
        for path in sorted(PIPELINE.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text("utf-8")))
        if isinstance(node, ast.Assign | ast.AnnAssign)
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Name) and target.id.startswith("EXIT_")
    ]
    assert defined and all(d.startswith("pipeline/cli/common.py:") for d in defined), defined


def leaf_commands(parser: argparse.ArgumentParser, prefix: str = "") -> list[str]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += leaf_commands(sub, f"{prefix}{name} ") or [f"{prefix}{name}"]
    return found


def main_docstring() -> str:
    # ``pipeline.cli.main`` as an attribute is the re-exported function, so ask for the module
    return importlib.import_module("pipeline.cli.main").__doc__ or ""


def docstring_commands() -> list[str]:
    doc = main_docstring()
    listing = doc.split("Commands", 1)[1].split("\n\n", 2)[1]
    return [re.split(r"\s{2,}", line.strip())[0] for line in listing.splitlines()]


def test_the_docstring_lists_every_command_once_in_order() -> None:
    commands = leaf_commands(build_parser())
    assert len(commands) == 21 and "segments" in commands and "kafka" in commands
    assert "model validate" in commands and "alerts ack" in commands and "up" in commands
    assert docstring_commands() == commands


@pytest.mark.parametrize("code", [common.EXIT_OK, common.EXIT_IO, common.EXIT_NOT_FOUND, common.EXIT_USAGE])
def test_the_docstring_states_every_exit_code(code: int) -> None:
    exit_codes = main_docstring().split("Exit codes", 1)[1].split("\n\n", 1)[0]
    assert re.search(rf"[:;] {code} ", exit_codes), exit_codes

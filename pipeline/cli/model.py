"""``leadflow model validate`` and ``leadflow model diagram``: check or draw a lifecycle model."""

from __future__ import annotations

import argparse

from pipeline.cli.common import Subparsers, load_model
from pipeline.state_machine.model import BANT_MEASURES


def cmd_model_validate(args: argparse.Namespace) -> int:
    model = load_model(args.file)
    print(
        f"{args.file}: valid model {model.label}: {len(model.stages)} stages, {len(model.advances)} advances, "
        f"{len(model.regressions)} cooling rules, {len(model.bands)} temperature bands"
    )
    escalation = "escalates at respond_by" if model.escalate_overdue else "no escalation"
    print(f"  speed to lead: respond within {model.respond_within / 60_000_000:g} minutes, {escalation}")
    bant_keys = {"bant", *BANT_MEASURES}
    for rule in model.advances:
        guard = [test for test in rule.require if test.key in bant_keys]
        if guard:
            text = ", ".join(f"{t.key} {t.op} {str(t.operand).lower()}" for t in guard)
            print(f"  BANT guard: -> {model.stages[rule.to]} ({rule.reason}) needs {text}")
    return 0


def cmd_model_diagram(args: argparse.Namespace) -> int:
    from pipeline.state_machine.diagram import mermaid

    print(mermaid(load_model(args.file)), end="")
    return 0


def register(subparsers: Subparsers) -> None:
    """Add ``model validate`` and ``model diagram``."""
    model = subparsers.add_parser("model", help="check or draw a lifecycle model").add_subparsers(
        dest="model_command", required=True, metavar="ACTION"
    )
    v = model.add_parser("validate", help="load a model file and report every problem")
    v.add_argument("file", metavar="FILE")
    v.set_defaults(func=cmd_model_validate)
    d = model.add_parser("diagram", help="print a Mermaid state diagram of a model (default: the built-in)")
    d.add_argument("file", metavar="FILE", nargs="?")
    d.set_defaults(func=cmd_model_diagram)

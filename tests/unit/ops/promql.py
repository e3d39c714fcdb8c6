"""Helpers for the operations tests: the metric names a PromQL expression uses, the names the code
exports, and where the shipped deployment files are."""

from __future__ import annotations

import importlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import REGISTRY

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
COMPOSE = ROOT / "docker-compose.yml"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
ALERT_RULES = DEPLOY / "prometheus" / "alerts.yml"
ALERT_TESTS = DEPLOY / "prometheus" / "alerts.test.yml"
DASHBOARDS = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
PROMTOOL = shutil.which("promtool") or ("/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None)
PROMTOOL_MISSING = "promtool not installed (Debian package `prometheus`; `make system-deps` installs it)"

#: Series Prometheus makes itself for every target.
PROMETHEUS_OWN = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}

_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
             "offset", "inf", "nan"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """Metric names selected by a PromQL expression (not functions, keywords, labels, durations)."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range and subquery durations
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _NAME.finditer(text):
        before = text[match.start() - 1] if match.start() else " "
        if before.isdigit() or before == ".":  # part of a number or duration (1e3, 5m)
            continue
        if text[match.end():].lstrip().startswith("("):  # a function call
            continue
        if match.group(0).lower() in _KEYWORDS:
            continue
        names.add(match.group(0))
    return names


def exported_names() -> set[str]:
    """Every series name the Leadflow processes can export (default registry, suffixes expanded)."""
    # Each process's metrics register with the default registry when their module is imported.
    for module in ("pipeline.ops.metrics", "pipeline.collector.metrics", "pipeline.webhooks.metrics"):
        importlib.import_module(module)

    names: set[str] = set()
    for family in REGISTRY.collect():
        if family.type == "counter":
            names |= {f"{family.name}_total", f"{family.name}_created"}
        elif family.type in ("histogram", "gaugehistogram"):
            names |= {f"{family.name}_bucket", f"{family.name}_sum", f"{family.name}_count", f"{family.name}_created"}
        elif family.type == "summary":
            names |= {family.name, f"{family.name}_sum", f"{family.name}_count", f"{family.name}_created"}
        elif family.type == "info":
            names.add(f"{family.name}_info")
        else:
            names.add(family.name)
    return names


def rule_expressions() -> dict[str, str]:
    """``{alert name: expr}`` of the shipped alert rules."""
    rules = yaml.safe_load(ALERT_RULES.read_text())
    return {rule.get("alert") or rule["record"]: rule["expr"] for group in rules["groups"] for rule in group["rules"]}


def dashboard_expressions() -> dict[str, str]:
    """``{"<dashboard>: <panel> [refId]": expr}`` of every query in the shipped dashboards."""
    out: dict[str, str] = {}
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        for panel in _panels(dashboard):
            for target in panel.get("targets", []):
                out[f"{path.name}: {panel['title']} [{target['refId']}]"] = target["expr"]
    return out


def _panels(container: dict[str, Any]) -> list[dict[str, Any]]:
    panels = []
    for panel in container.get("panels", []):
        panels.append(panel)
        panels.extend(_panels(panel))  # rows may nest panels
    return panels

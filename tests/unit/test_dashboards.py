"""The Grafana dashboard and the alert rules only use metrics the processes export."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import REGISTRY, CollectorRegistry

import consumers.runtime.archiver
import consumers.runtime.metrics
import relay.metrics
from api.metrics import ApiMetrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy/grafana/dashboards/qa-outbox.json"
ALERTS = ROOT / "deploy/prometheus/alerts.yml"
METRIC = re.compile(r"\bqa_[a-z_]+\b")

assert (
    consumers.runtime.archiver and consumers.runtime.metrics and relay.metrics
)  # registered on import


def exported() -> set[str]:
    names: set[str] = set()
    registries: list[CollectorRegistry] = [REGISTRY, ApiMetrics().registry]
    for registry in registries:
        for family in registry.collect():
            # Labelled metrics have no samples until a label set is used: go by family.
            suffixes = {
                "counter": ("_total",),
                "histogram": ("_bucket", "_sum", "_count"),
                "gauge": ("",),
            }.get(family.type, ("",))
            names.update(f"{family.name}{suffix}" for suffix in suffixes)
    return names


def dashboard_expressions() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [t["expr"] for p in panels for t in p.get("targets", [])]


def alert_expressions() -> list[str]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def test_every_dashboard_metric_is_exported() -> None:
    known = exported()
    used = {name for expr in dashboard_expressions() for name in METRIC.findall(expr)}
    assert used, "the dashboard queries no qa_ metric"
    assert used - known == set()


def test_every_alert_metric_is_exported() -> None:
    known = exported()
    used = {name for expr in alert_expressions() for name in METRIC.findall(expr)}
    assert used - known == set()


def test_panels_have_unique_ids_and_a_datasource() -> None:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "prometheus", panel["title"]

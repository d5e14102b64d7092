"""infra/prometheus/alerts.yaml: complete rules that read only metrics the services export."""

import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import REGISTRY

# Importing the modules registers their metrics with the process's default registry.
import services.gateway.receipts.service  # noqa: F401
import services.kit.metrics  # noqa: F401
from services.gateway.webhooks import Provider
from services.gateway.webhooks.errors import RejectionCode

ALERTS = Path(__file__).resolve().parents[2] / "infra" / "prometheus" / "alerts.yaml"


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def exported() -> dict[str, set[str]]:
    """Return the label names of each metric the services export, by the name Prometheus scrapes."""
    names: dict[str, set[str]] = {}
    for metric in REGISTRY.collect():
        for sample in metric.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
        # A labelled counter has no samples before its first increment, and is then scraped as `<name>_total`.
        if metric.type == "counter":
            names.setdefault(f"{metric.name}_total", set())
    return names


def test_every_rule_is_complete() -> None:
    for rule in rules():
        assert rule["alert"].startswith("Nurture"), rule
        assert rule["expr"].strip(), rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["description"], rule["alert"]


def test_rules_name_exported_metrics() -> None:
    known = exported()

    for rule in rules():
        for metric in re.findall(r"\bnurture_\w+", rule["expr"]):
            assert metric in known, f"{rule['alert']} reads {metric}, which no service exports"


def test_rejection_outcomes_exist() -> None:
    [rule] = [rule for rule in rules() if rule["alert"] == "NurtureWebhooksRejected"]
    [pattern] = re.findall(r'outcome=~"([^"]+)"', rule["expr"])

    assert set(pattern.split("|")) <= {code.value for code in RejectionCode}


def test_alerted_counters_exist_for_every_provider() -> None:
    # increase() cannot see a series' first sample, so a series born at its first block would miss it.
    samples = {
        (sample.name, sample.labels.get("provider"))
        for metric in REGISTRY.collect()
        for sample in metric.samples
        if sample.name in {"nurture_sending_blocks_total", "nurture_webhook_invalid_events_total"}
    }

    for provider in Provider:
        assert ("nurture_sending_blocks_total", provider.value) in samples
        assert ("nurture_webhook_invalid_events_total", provider.value) in samples

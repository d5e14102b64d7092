"""Rule-set documents, contacts and events shared by the scoring-rules tests."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from services.scoring.rules import CompiledRuleSet

START = datetime(2024, 6, 3, 9, 0, tzinfo=UTC)  # a Monday

CompileDocument = Callable[[dict[str, Any]], CompiledRuleSet]

PRICING_URL = {"field": "properties.url", "op": "matches", "value": "/pricing"}

REFERENCE_RULE_SET: dict[str, Any] = {
    "mql_threshold": 50,
    "decay": {"type": "half_life", "half_life_days": 30},
    "rules": [
        {
            "name": "vp-title",
            "kind": "fit",
            "points": 10,
            "when": {"field": "attributes.job_title", "op": "contains", "value": "VP"},
        },
        {
            "name": "mid-size-company",
            "kind": "fit",
            "points": 10,
            "when": {"field": "company.size", "op": "between", "value": [50, 500]},
        },
        {
            "name": "target-industry",
            "kind": "fit",
            "points": 5,
            "when": {"field": "company.industry", "op": "in", "value": ["SaaS", "Fintech"]},
        },
        {
            "name": "student",
            "kind": "fit",
            "points": -20,
            "when": {"field": "attributes.job_title", "op": "contains", "value": "student"},
        },
        {
            "name": "competitor",
            "kind": "fit",
            "points": -100,
            "when": {"field": "email_domain", "op": "in", "value": ["rival.example"]},
        },
        {
            "name": "unsubscribed",
            "kind": "fit",
            "points": -10,
            "when": {"field": "consent.status", "op": "eq", "value": "unsubscribed"},
        },
        {
            "name": "pricing-visit",
            "kind": "engagement",
            "event": "page_view",
            "where": PRICING_URL,
            "points": 15,
            "cap": {"max_points": 30},
        },
        {
            "name": "content-download",
            "kind": "engagement",
            "event": "content_downloaded",
            "points": 8,
            "cap": {"max_points": 16, "period": "week"},
        },
        {
            "name": "email-open",
            "kind": "engagement",
            "event": "email_opened",
            # Machine opens (Apple Mail privacy protection, scanners) earn nothing.
            "where": {
                "any": [
                    {"field": "properties.machine", "op": "not_exists"},
                    {"field": "properties.machine", "op": "eq", "value": False},
                ]
            },
            "points": 1,
        },
        {"name": "email-click", "kind": "engagement", "event": "email_clicked", "points": 3},
        {
            "name": "demo-request",
            "kind": "engagement",
            "event": "form_submitted",
            "where": {"field": "properties.form", "op": "eq", "value": "demo"},
            "points": 25,
        },
        {
            "name": "hard-bounce",
            "kind": "engagement",
            "event": "email_bounced",
            "where": {"field": "properties.bounce_type", "op": "eq", "value": "hard"},
            "points": -15,
            "decay": {"type": "none"},
        },
        {
            "name": "unsubscribe-event",
            "kind": "engagement",
            "event": "unsubscribed",
            "points": -10,
            "decay": {"type": "none"},
        },
        {
            "name": "click-then-pricing",
            "kind": "pattern",
            "points": 20,
            "within_days": 7,
            "steps": [{"event": "email_clicked"}, {"event": "page_view", "where": PRICING_URL}],
        },
    ],
}


def reference_document(**changes: Any) -> dict[str, Any]:
    """Return a fresh copy of the reference rule set with top-level fields replaced."""
    document = copy.deepcopy(REFERENCE_RULE_SET)
    document.update(changes)
    return document


def single_rule_document(rule: dict[str, Any], **changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {"mql_threshold": 50, "rules": [rule]}
    document.update(changes)
    return document


def event(
    event_id: str,
    event_type: str,
    *,
    days: float = 0,
    at: datetime | None = None,
    **properties: Any,
) -> dict[str, Any]:
    """Return an event document `days` after START (or at `at`)."""
    occurred_at = at if at is not None else START + timedelta(days=days)
    return {
        "id": event_id,
        "type": event_type,
        "occurred_at": occurred_at.isoformat(),
        "properties": properties,
    }


def contact(**overrides: Any) -> dict[str, Any]:
    """Return a VP at a mid-size SaaS company, subscribed, with fields replaced by `overrides`."""
    document: dict[str, Any] = {
        "email": "vera@acme.example",
        "attributes": {"job_title": "VP Marketing"},
        "company": {"size": 120, "industry": "SaaS"},
        "consent": {"status": "subscribed"},
    }
    document.update(overrides)
    return document

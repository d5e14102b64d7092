"""The marketing set-up the demo installs: a lead-scoring rule set, templates, a segment and a sequence.

Everything here is plain data sent through the public API, the way a marketing team would define
it. The scores use only what was known before the call whose length (`duration`) the dataset
records, and never the outcome `y`.
"""

from __future__ import annotations

from typing import Any

from services.cli.demo.dataset import TIMEZONE

LEAD_SOURCE = "uci-bank-marketing"
NURTURE_GROUP = "nurture"
HOLDOUT_GROUP = "holdout"
# Every fifth lead is held out of the nurture sequence, so the nurture-impact report has a control
# group. Rows are in date order, so taking every fifth spreads the holdout over the whole campaign.
HOLDOUT_EVERY = 5

# Attributes the demo adds next to the dataset's own: where the lead came from, its test group,
# and (once the nurture period is over) whether the person really subscribed.
DEMO_ATTRIBUTES: dict[str, dict[str, Any]] = {
    "lead_source": {"type": "string", "label": "Lead source"},
    "nurture_group": {"type": "string", "label": "Nurture test group (nurture or holdout)"},
}
OUTCOME_ATTRIBUTE = "subscribed_term_deposit"
OUTCOME_DEFINITION: dict[str, Any] = {
    "type": "boolean",
    "label": "Subscribed a term deposit (recorded after the nurture period)",
}

BANK_SITE = "https://bank.example"


def nurture_group(row: int) -> str:
    return HOLDOUT_GROUP if row % HOLDOUT_EVERY == 0 else NURTURE_GROUP


def _fit(name: str, points: int, when: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "kind": "fit", "points": points, "when": when, "description": description}


def _attribute(name: str, op: str, value: Any = None) -> dict[str, Any]:
    condition: dict[str, Any] = {"field": f"attributes.{name}", "op": op}
    if value is not None:
        condition["value"] = value
    return condition


HUMAN_OPEN = {"any": [{"field": "properties.machine", "op": "not_exists"}, {"field": "properties.machine", "op": "eq", "value": False}]}

# Fit follows who subscribed in the bank's earlier campaigns: retired people and students, the
# youngest and oldest clients, people without loans and with savings, and those reachable by mobile.
RULE_SET: dict[str, Any] = {
    "mql_threshold": 40,
    "decay": {"type": "half_life", "half_life_days": 30},
    "rules": [
        _fit("retired-or-student", 15, _attribute("job", "in", ["retired", "student"]), "Most likely to save"),
        _fit("young-or-senior", 10, {"any": [_attribute("age", "lte", 25), _attribute("age", "gte", 60)]}, "Age band that saves"),
        _fit("no-housing-loan", 10, _attribute("housing_loan", "eq", False), "No mortgage to pay off"),
        _fit("personal-loan", -5, _attribute("personal_loan", "eq", True), "Already paying a loan"),
        _fit("in-default", -15, _attribute("credit_default", "eq", True), "Credit in default"),
        _fit("savings", 5, _attribute("balance", "gte", 1500), "Average balance of 1,500 EUR or more"),
        _fit("overdrawn", -5, _attribute("balance", "lt", 0), "Negative average balance"),
        _fit("university", 3, _attribute("education", "eq", "tertiary"), "University education"),
        _fit("mobile", 5, _attribute("contact_channel", "eq", "cellular"), "Reachable by mobile phone"),
        {
            "name": "earlier-success", "kind": "engagement", "event": "earlier_campaign", "points": 40,
            "where": {"field": "properties.outcome", "op": "eq", "value": "success"},
            "decay": {"type": "none"}, "description": "Said yes in an earlier campaign",
        },
        {
            "name": "earlier-contact", "kind": "engagement", "event": "earlier_campaign", "points": 5,
            "decay": {"type": "none"}, "description": "Talked to the bank in an earlier campaign",
        },
        {
            "name": "many-calls", "kind": "engagement", "event": "call_made", "points": -3,
            "where": {"field": "properties.attempt", "op": "gte", "value": 4},
            "cap": {"max_points": 15}, "decay": {"type": "none"},
            "description": "Called four times or more in this campaign without saying yes",
        },
        {
            "name": "email-open", "kind": "engagement", "event": "email_opened", "points": 5, "where": HUMAN_OPEN,
            "cap": {"max_points": 20}, "description": "Opened a nurture email (people only, not mail scanners)",
        },
        {
            "name": "email-click", "kind": "engagement", "event": "email_clicked", "points": 12,
            "where": {"any": [{"field": "properties.bot", "op": "not_exists"}, {"field": "properties.bot", "op": "eq", "value": False}]},
            "cap": {"max_points": 36}, "description": "Clicked a link in a nurture email",
        },
    ],
}


def segment_body() -> dict[str, Any]:
    """Return the segment of the imported leads that the nurture sequence enrols."""
    return {
        "name": "Bank Marketing leads to nurture",
        "filter": {
            "all": [
                {"field": "attributes.lead_source", "op": "eq", "value": LEAD_SOURCE},
                {"field": "attributes.nurture_group", "op": "eq", "value": NURTURE_GROUP},
            ]
        },
    }


_FOOTER = (
    '<p style="color:#666;font-size:12px">Example Bank, Rua do Exemplo 1, Lisboa. '
    '<a href="{{ unsubscribe_url }}">Unsubscribe</a></p>'
)


def _html(*paragraphs: str) -> str:
    body = "\n".join(f"<p>{paragraph}</p>" if not paragraph.startswith("{%") else paragraph for paragraph in paragraphs)
    return f"<html><body>\n<p>Hello,</p>\n{body}\n<p>Your team at Example Bank</p>\n{_FOOTER}\n</body></html>"


TEMPLATES: dict[str, dict[str, str]] = {
    "welcome": {
        "name": "Bank leads: welcome",
        "subject": "Welcome: your savings can earn more",
        "html": _html(
            "Thank you for talking to us. A term deposit keeps your savings safe and earns a fixed rate.",
            "{% if contact.job == 'retired' %}<p>Many of our retired clients use one to plan the next years.</p>"
            "{% elif contact.job == 'student' %}<p>You can start with as little as 100 EUR.</p>{% endif %}",
            f'<a href="{BANK_SITE}/term-deposits">See how a term deposit works</a>',
        ),
    },
    "rates": {
        "name": "Bank leads: this month's rates",
        "subject": "Term deposit rates this month",
        "html": _html(
            "Here are this month's fixed rates for 3, 6 and 12 months.",
            f'<a href="{BANK_SITE}/term-deposits/rates">Compare the rates</a>',
        ),
    },
    "call-offer": {
        "name": "Bank leads: call offer",
        "subject": "Shall we call you about a term deposit?",
        "html": _html(
            "You looked at our rates. One of our advisers can answer your questions in a 10-minute call.",
            f'<a href="{BANK_SITE}/book-a-call">Book a call</a>',
        ),
    },
    "savings-tips": {
        "name": "Bank leads: savings tips",
        "subject": "Three ways to make your savings work harder",
        "html": _html(
            "Set a goal, automate a monthly transfer, and lock part of your savings at a fixed rate.",
            f'<a href="{BANK_SITE}/savings-tips">Read the three tips</a>',
        ),
    },
    "rate-offer": {
        "name": "Bank leads: rate offer",
        "subject": "A better rate for the next two weeks",
        "html": _html(
            "For the next two weeks, new 12-month deposits earn an extra 0.25 percentage points.",
            f'<a href="{BANK_SITE}/term-deposits/offer">Claim the offer</a>',
        ),
    },
    "check-in": {
        "name": "Bank leads: check-in",
        "subject": "Any questions about saving with us?",
        "html": _html(
            "If now is not the right time, that is fine. Reply to this email whenever you want to talk.",
            f'<a href="{BANK_SITE}/contact">Contact an adviser</a>',
        ),
    },
}


def sequence_body(template_ids: dict[str, str], segment_id: str) -> dict[str, Any]:
    """Return the welcome and nurture sequence: five emails over three weeks, until sales accepts the lead."""

    def email(step: str) -> dict[str, Any]:
        return {"id": step, "email": {"template_id": template_ids[step]}}

    return {
        "name": "Bank leads: welcome and nurture",
        "trigger": {"type": "segment_entered", "segment_id": segment_id},
        "goal": {"type": "stage_reached", "stage": "sql"},
        "timezone": TIMEZONE,
        "steps": [
            email("welcome"),
            {"wait": {"days": 3}},
            email("rates"),
            {"wait": {"days": 4}},
            {
                "branch": {
                    "condition": {"type": "engagement", "step_id": "rates", "action": "clicked"},
                    "then": [email("call-offer")],
                    "else": [email("savings-tips")],
                }
            },
            {"wait": {"days": 7}},
            email("rate-offer"),
            {"wait": {"days": 7}},
            email("check-in"),
        ],
    }

"""seed the default score model

Revision ID: c31531f3f215
Revises: 856b77455d17
Create Date: 2026-12-04 21:00:00

A fresh platform scores events out of the box with the "default" model: the reference rule set of
docs/scoring-rules.md (fit on title, company size, industry, competitors and consent; engagement on
pricing visits, downloads, human email opens and clicks, demo requests, bounces and unsubscribes; a
click-then-pricing pattern). Operators change it like any model, with PUT /v1/scoring/models/default.
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import services.kit.db

revision: str = 'c31531f3f215'
down_revision: str | None = '856b77455d17'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MODEL = "default"
DESCRIPTION = "The reference rule set, installed with the platform; replace it with your own."

# A copy, not an import: a migration must keep doing what it did when it shipped.
RULE_SET = {
    "mql_threshold": 50,
    "decay": {
        "type": "half_life",
        "half_life_days": 30
    },
    "rules": [
        {
            "name": "vp-title",
            "kind": "fit",
            "points": 10,
            "when": {
                "field": "attributes.job_title",
                "op": "contains",
                "value": "VP"
            }
        },
        {
            "name": "mid-size-company",
            "kind": "fit",
            "points": 10,
            "when": {
                "field": "company.size",
                "op": "between",
                "value": [
                    50,
                    500
                ]
            }
        },
        {
            "name": "target-industry",
            "kind": "fit",
            "points": 5,
            "when": {
                "field": "company.industry",
                "op": "in",
                "value": [
                    "SaaS",
                    "Fintech"
                ]
            }
        },
        {
            "name": "student",
            "kind": "fit",
            "points": -20,
            "when": {
                "field": "attributes.job_title",
                "op": "contains",
                "value": "student"
            }
        },
        {
            "name": "competitor",
            "kind": "fit",
            "points": -100,
            "when": {
                "field": "email_domain",
                "op": "in",
                "value": [
                    "rival.example"
                ]
            }
        },
        {
            "name": "unsubscribed",
            "kind": "fit",
            "points": -10,
            "when": {
                "field": "consent.status",
                "op": "eq",
                "value": "unsubscribed"
            }
        },
        {
            "name": "pricing-visit",
            "kind": "engagement",
            "event": "page_view",
            "points": 15,
            "where": {
                "field": "properties.url",
                "op": "matches",
                "value": "/pricing"
            },
            "cap": {
                "max_points": 30
            }
        },
        {
            "name": "content-download",
            "kind": "engagement",
            "event": "content_downloaded",
            "points": 8,
            "cap": {
                "max_points": 16,
                "period": "week"
            }
        },
        {
            "name": "email-open",
            "kind": "engagement",
            "event": "email_opened",
            "points": 1,
            "where": {
                "any": [
                    {
                        "field": "properties.machine",
                        "op": "not_exists"
                    },
                    {
                        "field": "properties.machine",
                        "op": "eq",
                        "value": False
                    }
                ]
            }
        },
        {
            "name": "email-click",
            "kind": "engagement",
            "event": "email_clicked",
            "points": 3
        },
        {
            "name": "demo-request",
            "kind": "engagement",
            "event": "form_submitted",
            "points": 25,
            "where": {
                "field": "properties.form",
                "op": "eq",
                "value": "demo"
            }
        },
        {
            "name": "hard-bounce",
            "kind": "engagement",
            "event": "email_bounced",
            "points": -15,
            "where": {
                "field": "properties.bounce_type",
                "op": "eq",
                "value": "hard"
            },
            "decay": {
                "type": "none"
            }
        },
        {
            "name": "unsubscribe-event",
            "kind": "engagement",
            "event": "unsubscribed",
            "points": -10,
            "decay": {
                "type": "none"
            }
        },
        {
            "name": "click-then-pricing",
            "kind": "pattern",
            "points": 20,
            "within_days": 7,
            "steps": [
                {
                    "event": "email_clicked"
                },
                {
                    "event": "page_view",
                    "where": {
                        "field": "properties.url",
                        "op": "matches",
                        "value": "/pricing"
                    }
                }
            ]
        }
    ]
}

score_model = sa.table(
    "score_model",
    sa.column("name", sa.String),
    sa.column("description", sa.String),
    sa.column("active_version", sa.Integer),
    sa.column("mql_threshold", sa.Float),
    sa.column("demote_below_threshold", sa.Boolean),
    sa.column("active", sa.Boolean),
    sa.column("created_at", services.kit.db.UTCDateTime(timezone=True)),
    sa.column("updated_at", services.kit.db.UTCDateTime(timezone=True)),
)
rule_set_version = sa.table(
    "rule_set_version",
    sa.column("model", sa.String),
    sa.column("version", sa.Integer),
    sa.column("document", sa.JSON),
    sa.column("mql_threshold", sa.Float),
    sa.column("created_at", services.kit.db.UTCDateTime(timezone=True)),
)


def upgrade() -> None:
    exists = op.get_bind().execute(sa.select(score_model.c.name).where(score_model.c.name == MODEL)).first()
    if exists is not None:
        return
    # Migrations run outside the services, so the wall clock stands in for the platform clock here.
    now = datetime.now(UTC)
    threshold = float(RULE_SET["mql_threshold"])
    op.bulk_insert(
        rule_set_version,
        [{"model": MODEL, "version": 1, "document": RULE_SET, "mql_threshold": threshold, "created_at": now}],
    )
    op.bulk_insert(
        score_model,
        [
            {
                "name": MODEL,
                "description": DESCRIPTION,
                "active_version": 1,
                "mql_threshold": threshold,
                "demote_below_threshold": False,
                "active": True,
                "created_at": now,
                "updated_at": now,
            }
        ],
    )


def downgrade() -> None:
    op.execute(rule_set_version.delete().where(rule_set_version.c.model == MODEL))
    op.execute(score_model.delete().where(score_model.c.name == MODEL))

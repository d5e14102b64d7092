"""The demo's playbook is valid for each service's own validator and never scores the outcome or `duration`."""

import csv
import io
import json
from datetime import UTC, datetime

from services.cli.demo.dataset import ATTRIBUTES, ROWS, sample_leads
from services.cli.demo.ingest import contacts_csv, history_batches, outcome_csv
from services.cli.demo.playbook import (
    DEMO_ATTRIBUTES,
    HOLDOUT_GROUP,
    OUTCOME_ATTRIBUTE,
    RULE_SET,
    TEMPLATES,
    nurture_group,
    segment_body,
    sequence_body,
)
from services.contacts.attributes.types import AttributeDefinition
from services.contacts.segments.validation import parse_filter
from services.scoring.rules import load_rule_set
from services.sequencer.sequences.validation import parse_sequence
from services.sequencer.templates import validate_template


def test_rule_set_compiles() -> None:
    compiled = load_rule_set(RULE_SET)

    assert compiled.mql_threshold == RULE_SET["mql_threshold"]
    assert {rule.kind for rule in compiled.rule_set.rules} == {"fit", "engagement"}


def test_rule_set_never_reads_duration_or_outcome() -> None:
    document = json.dumps(RULE_SET)

    assert "duration" not in document
    assert OUTCOME_ATTRIBUTE not in document
    assert '"y"' not in document


def test_templates_pass_validation() -> None:
    for template in TEMPLATES.values():
        validate_template(template["subject"], template["html"], template.get("text"))


def test_sequence_parses_and_names_its_email_steps() -> None:
    template_ids = {key: f"tpl_{key}" for key in TEMPLATES}

    definition = parse_sequence(sequence_body(template_ids, "segment-1"))

    emails = [step.id for _, step in definition.iter_steps() if step.email is not None]
    assert emails == ["welcome", "rates", "call-offer", "savings-tips", "rate-offer", "check-in"]
    assert definition.goal is not None and definition.goal.stage == "sql"


def test_segment_filter_parses_with_the_demo_attributes() -> None:
    definitions = {name: AttributeDefinition(name=name, **body) for name, body in DEMO_ATTRIBUTES.items()}

    parse_filter(segment_body()["filter"], attributes=definitions)


def test_every_fifth_lead_is_held_out() -> None:
    groups = [nurture_group(row) for row in range(1, 101)]

    assert groups.count(HOLDOUT_GROUP) == 20
    assert nurture_group(5) == HOLDOUT_GROUP
    assert nurture_group(6) != HOLDOUT_GROUP


def test_contacts_csv_maps_every_column() -> None:
    leads = sample_leads(50)

    content, mapping = contacts_csv(leads)

    rows = list(csv.DictReader(io.StringIO(content.decode())))
    assert len(rows) == 50
    assert set(mapping) == set(rows[0])
    assert {mapping[name] for name in ATTRIBUTES} == {f"attributes.{name}" for name in ATTRIBUTES}
    assert "duration" not in rows[0]
    assert OUTCOME_ATTRIBUTE not in rows[0]
    assert rows[0]["email"] == leads[0].email
    assert rows[0]["stage"] == "lead"


def test_outcome_csv_lists_only_subscribers() -> None:
    leads = sample_leads(300)

    content, mapping = outcome_csv(leads)

    rows = list(csv.DictReader(io.StringIO(content.decode())))
    assert [row["email"] for row in rows] == [lead.email for lead in leads if lead.subscribed]
    assert mapping[OUTCOME_ATTRIBUTE] == f"attributes.{OUTCOME_ATTRIBUTE}"


def test_sample_spreads_over_the_whole_file() -> None:
    leads = sample_leads(100)

    assert len(leads) == 100
    assert leads[0].row == 1
    assert leads[-1].row > ROWS * 0.98
    assert len({lead.row for lead in leads}) == 100


def test_history_batches_hold_at_most_a_thousand_events() -> None:
    batches = history_batches(sample_leads(1000), datetime(2026, 1, 1, tzinfo=UTC))

    assert all(len(batch) <= 1000 for batch in batches)
    assert len(batches) > 1

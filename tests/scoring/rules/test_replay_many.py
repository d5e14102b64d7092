"""Replaying many contacts together gives each contact the ledger and score of replaying it alone."""

import random
from datetime import timedelta
from typing import Any

import pytest

from services.scoring.rules import CompiledRuleSet, ScoringInputError, match_event, match_fit, replay, replay_many
from services.scoring.rules import matching
from services.scoring.rules.facts import parse_event
from services.scoring.rules.matching import events_match_alone, match_events_alone, match_fit_many
from tests.scoring.rules.builders import START, CompileDocument, event, reference_document

NOW = START + timedelta(days=40)

TITLES = ["VP Sales", "student", "Engineer", None, 42]
DOMAINS = ["acme.example", "rival.example", "other.example"]
EVENT_KINDS: list[tuple[str, dict[str, Any]]] = [
    ("page_view", {"url": "https://acme.example/pricing"}),
    ("page_view", {"url": "https://acme.example/blog"}),
    ("email_clicked", {}),
    ("email_opened", {}),
    ("email_opened", {"machine": True}),
    ("content_downloaded", {"asset": "guide"}),
    ("form_submitted", {"form": "demo"}),
    ("email_bounced", {"bounce_type": "hard"}),
    ("webinar_attended", {}),
]


def people(count: int, seed: int) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """Return `count` varied contacts and their histories, with ties in time, repeats and unscored types."""
    generator = random.Random(seed)
    contacts: dict[str, dict[str, Any]] = {}
    histories: dict[str, list[dict[str, Any]]] = {}
    for number in range(count):
        contact_id = f"c{number:03d}"
        contacts[contact_id] = {
            "email": f"p{number}@{generator.choice(DOMAINS)}",
            "attributes": {"job_title": generator.choice(TITLES)},
            "company": {"size": generator.choice([10, 120, 900]), "industry": generator.choice(["SaaS", "Retail"])},
            "consent": {"status": generator.choice(["subscribed", "unsubscribed"])},
        }
        events = []
        for index in range(generator.randrange(0, 12)):
            event_type, properties = generator.choice(EVENT_KINDS)
            day = generator.randrange(0, 35) + generator.choice([0, 0.5])
            events.append(event(f"{contact_id}-e{index}", event_type, days=day, **properties))
        if events and generator.random() < 0.3:
            events.append(dict(events[0]))
        histories[contact_id] = events
    return contacts, histories


def assert_same_as_alone(compiled: CompiledRuleSet, contacts: dict[str, Any], histories: dict[str, Any]) -> None:
    replays, failed = replay_many(compiled, contacts, histories, now=NOW)

    assert failed == {}
    assert replays.keys() == contacts.keys()
    for contact_id, contact in contacts.items():
        alone = replay(compiled, contact=contact, events=histories[contact_id], now=NOW)
        assert replays[contact_id].entries == alone.entries, contact_id
        assert replays[contact_id].score == alone.score, contact_id


def without_pattern() -> dict[str, Any]:
    """Return the reference rule set without its pattern rule, and with a second rule on every page view."""
    document = reference_document()
    document["rules"] = [rule for rule in document["rules"] if rule["kind"] != "pattern"]
    document["rules"].append({"name": "any-page", "kind": "engagement", "event": "page_view", "points": 1, "cap": {"max_points": 4}})
    return document


def test_shared_sessions_match_alone(compile_document: CompileDocument) -> None:
    compiled = compile_document(without_pattern())
    contacts, histories = people(60, seed=7)

    assert events_match_alone(compiled)
    assert sum(len(events) for events in histories.values()) > 200
    assert_same_as_alone(compiled, contacts, histories)


def test_pattern_rules_replay_alone(compile_document: CompileDocument) -> None:
    compiled = compile_document(reference_document())
    contacts, histories = people(30, seed=11)

    assert not events_match_alone(compiled)
    assert_same_as_alone(compiled, contacts, histories)


def test_contact_condition_replays_alone(compile_document: CompileDocument) -> None:
    document = without_pattern()
    document["rules"].append(
        {"name": "big-company-click", "kind": "engagement", "event": "email_clicked", "points": 4,
         "contact_when": {"field": "company.size", "op": "gte", "value": 500}}
    )
    compiled = compile_document(document)
    contacts, histories = people(30, seed=13)

    assert not events_match_alone(compiled)
    assert_same_as_alone(compiled, contacts, histories)


def test_sessions_split_keep_results(compile_document: CompileDocument, monkeypatch: pytest.MonkeyPatch) -> None:
    compiled = compile_document(without_pattern())
    contacts, histories = people(40, seed=17)
    monkeypatch.setattr(matching, "SESSION_FACTS", 7)

    assert_same_as_alone(compiled, contacts, histories)


def test_malformed_contact_left_out(compile_document: CompileDocument) -> None:
    compiled = compile_document(without_pattern())
    contacts, histories = people(5, seed=19)
    contacts["c001"] = "not a contact"  # type: ignore[assignment]
    histories["c002"] = [{"id": "bad", "type": "page_view", "occurred_at": "yesterday"}]

    replays, failed = replay_many(compiled, contacts, histories, now=NOW)

    assert sorted(failed) == ["c001", "c002"]
    assert failed["c001"].field == "contact"
    assert failed["c002"].field == "events[0].occurred_at"
    assert sorted(replays) == ["c000", "c003", "c004"]
    assert replays["c003"] == replay(compiled, contact=contacts["c003"], events=histories["c003"], now=NOW)


def test_matches_equal_one_by_one(compile_document: CompileDocument) -> None:
    compiled = compile_document(without_pattern())
    contacts, histories = people(20, seed=23)
    events = [raw for history in histories.values() for raw in history]
    records = [parse_event(raw, "event") for raw in events]

    together = match_events_alone(compiled, records)
    fits = match_fit_many(compiled, list(contacts.values()))

    assert together == [match_event(compiled, contact={}, event=raw) for raw in events]
    assert fits == [match_fit(compiled, contact=contact) for contact in contacts.values()]
    assert any(len(matches) > 1 for matches in together)


def test_errors_equal_replay_alone(compile_document: CompileDocument) -> None:
    compiled = compile_document(without_pattern())
    contacts = {"both": "not a contact", "contact": "not a contact"}
    histories = {"both": [{"id": "bad", "type": "page_view", "occurred_at": "yesterday"}], "contact": []}

    _, failed = replay_many(compiled, contacts, histories, now=NOW)

    for contact_id, contact in contacts.items():
        with pytest.raises(ScoringInputError) as alone:
            replay(compiled, contact=contact, events=histories[contact_id], now=NOW)  # type: ignore[arg-type]
        assert failed[contact_id].field == alone.value.field

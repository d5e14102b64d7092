"""The shipped Bank Marketing dataset reads completely and maps to contacts and events."""

from datetime import UTC, datetime

from services.cli.demo.dataset import ROWS, email_for, history_events, read_leads

START = datetime(2026, 1, 1, tzinfo=UTC)


def test_every_row_reads_with_its_outcome() -> None:
    leads = list(read_leads())

    assert len(leads) == ROWS
    assert sum(lead.subscribed for lead in leads) == 5_289
    assert len({lead.email for lead in leads}) == ROWS


def test_unknown_is_left_out_and_duration_never_stored() -> None:
    first = next(read_leads(limit=1))

    assert first.email == email_for(1) == "lead00001@example.com"
    assert "contact_channel" not in first.attributes  # the first row's channel is "unknown"
    assert "duration" not in first.attributes
    assert first.attributes["job"] == "management"
    assert first.attributes["housing_loan"] is True


def test_history_becomes_dated_events_before_start() -> None:
    lead = next(lead for lead in read_leads() if lead.earlier_calls > 0 and lead.campaign_calls >= 3)

    events = history_events(lead, start=START)

    calls = [event for event in events if event["type"] == "call_made"]
    earlier = [event for event in events if event["type"] == "earlier_campaign"]
    assert len(calls) == lead.campaign_calls
    assert len(earlier) == 1
    assert earlier[0]["properties"]["calls"] == lead.earlier_calls
    assert all(datetime.fromisoformat(event["occurred_at"]) < START for event in events)
    assert len({event["id"] for event in events}) == len(events)


def test_no_event_for_never_called_before() -> None:
    lead = next(read_leads(limit=1))

    events = history_events(lead, start=START)

    assert [event["type"] for event in events] == ["call_made"]


def test_every_lead_history_ends_before_start() -> None:
    latest = max(
        datetime.fromisoformat(event["occurred_at"]) for lead in read_leads() for event in history_events(lead, start=START)
    )

    assert latest < START

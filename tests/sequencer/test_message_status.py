"""A message's status depends on the set of its events, never on the order they arrived in."""

from datetime import UTC, datetime, timedelta
from itertools import permutations

import pytest

from services.sequencer.engagement.status import EventFact, derive_status

AT = datetime(2024, 6, 4, 10, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return AT + timedelta(minutes=minutes)


def test_open_delivery_processed_in_any_order() -> None:
    events = [EventFact("opened", at(5), "human"), EventFact("delivered", at(0)), EventFact("processed", at(-1))]

    results = {derive_status("sent", list(order)) for order in permutations(events)}

    assert len(results) == 1
    [result] = results
    assert (result.status, result.delivered_at, result.opened_at) == ("opened", at(0), at(5))


def test_bounce_older_than_delivery_is_stale() -> None:
    result = derive_status("sent", [EventFact("delivered", at(0)), EventFact("bounced", at(-2))])

    assert result.status == "delivered"
    assert result.bounced_at == at(-2)
    assert not result.bounce_is_current


def test_bounce_after_delivery_without_opens_counts() -> None:
    result = derive_status("sent", [EventFact("delivered", at(0)), EventFact("bounced", at(30))])

    assert result.status == "bounced"
    assert result.bounce_is_current


def test_bounce_of_opened_message_is_stale() -> None:
    result = derive_status("sent", [EventFact("opened", at(1), "human"), EventFact("bounced", at(60))])

    assert result.status == "opened"


def test_machine_open_does_not_open() -> None:
    result = derive_status("sent", [EventFact("delivered", at(0)), EventFact("opened", at(1), "machine")])

    assert (result.status, result.opened_at) == ("delivered", None)


def test_complaint_outranks_click() -> None:
    events = [EventFact("clicked", at(3), "human"), EventFact("complained", at(2))]

    assert derive_status("sent", events).status == "complained"


def test_drop_counts_as_bounce() -> None:
    assert derive_status("sent", [EventFact("dropped", at(0))]).status == "bounced"


@pytest.mark.parametrize(
    ("state", "status"),
    [("sending", "sending"), ("awaiting_reply", "sending"), ("retrying", "retrying"), ("sent", "sent"),
     ("failed_permanent", "failed"), ("failed_temporary", "failed"), ("cancelled", "cancelled")],
)
def test_send_state_without_events(state: str, status: str) -> None:
    assert derive_status(state, []).status == status

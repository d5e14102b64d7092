"""Bounce classification: status-code refinement and the failure classes of each policy."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from services.gateway.webhooks import (
    CertificateFetcher,
    EventType,
    FailureClass,
    RedisReplayCache,
    SoftBouncePolicy,
    WebhookConfig,
    classify_event,
    classify_failure,
    refine_bounce_type,
    verify_and_map,
)
from services.gateway.webhooks.events import SkipReason

from .conftest import MANIFEST, TEST_CLOCK, fixture_bytes

HARD, SOFT = EventType.BOUNCED_HARD, EventType.BOUNCED_SOFT


@pytest.mark.parametrize(
    ("label", "status", "expected"),
    [
        (SOFT, "5.1.1", HARD),  # bad mailbox
        (SOFT, "5.1.2", HARD),  # bad domain
        (SOFT, "5.4.4", HARD),  # unable to route
        (SOFT, "5.1.5", SOFT),  # "destination address valid" keeps the label
        (HARD, "5.1.5", HARD),
        (HARD, "4.2.2", SOFT),  # any class 4
        (HARD, "5.7.1", SOFT),  # policy: blocklist, DMARC, reputation
        (HARD, "5.7.26", SOFT),
        (HARD, "5.2.2", SOFT),  # mailbox full
        (HARD, "5.2.1", HARD),  # other codes keep the label
        (SOFT, "5.0.0", SOFT),
        (HARD, "5.1", HARD),  # not an enhanced status code
        (SOFT, "550", SOFT),
        (SOFT, " 5.1.1", SOFT),
        (HARD, None, HARD),
        (EventType.DROPPED, "5.1.1", EventType.DROPPED),  # never refined
        (EventType.DEFERRED, "5.1.1", EventType.DEFERRED),
    ],
)
def test_refine_bounce_type(label: EventType, status: str | None, expected: EventType) -> None:
    assert refine_bounce_type(label, status) is expected


# Delivery-failure cases from real-world faults: the status code decides, labels are hints.
FAILURE_CASES = [
    pytest.param(
        {"smtp_status": "5.1.1", "diagnostic": "550 5.1.1 user unknown", "event_type": HARD},
        FailureClass.HARD,
        id="user-unknown-hard",
    ),
    pytest.param(
        {
            "smtp_status": "5.4.4",
            "diagnostic": "550 5.4.4 invalid domain",
            "event_type": SOFT,
            "provider_label": "Transient",
        },
        FailureClass.HARD,
        id="transient-label-but-status-hard",
    ),
    pytest.param(
        {"smtp_status": "4.2.2", "diagnostic": "452 4.2.2 mailbox full", "event_type": SOFT},
        FailureClass.SOFT,
        id="mailbox-full-soft",
    ),
    pytest.param(
        {
            "smtp_status": "5.7.1",
            "diagnostic": "550 5.7.1 client host [192.0.2.10] blocked using zen.spamhaus.org",
            "event_type": HARD,
            "provider_label": "bounce",
        },
        FailureClass.BLOCK,
        id="blocklist-policy-block",
    ),
    pytest.param(
        {
            "smtp_status": "4.7.1",
            "diagnostic": "451 4.7.1 Greylisted, try again",
            "event_type": SOFT,
        },
        FailureClass.SOFT,
        id="greylisting-soft",
    ),
    pytest.param(
        {
            "smtp_status": "4.7.0",
            "diagnostic": "421 4.7.0 poor sender reputation",
            "event_type": SOFT,
        },
        FailureClass.BLOCK,
        id="temporary-reputation-block",
    ),
    pytest.param(
        {"smtp_status": None, "diagnostic": "Out of Office: back on Monday", "event_type": SOFT},
        FailureClass.AUTO_REPLY,
        id="out-of-office-auto-reply",
    ),
    pytest.param(
        {"smtp_status": None, "diagnostic": None, "provider_label": "AutoResponder"},
        FailureClass.AUTO_REPLY,
        id="postmark-autoresponder",
    ),
    pytest.param(
        {"smtp_status": None, "diagnostic": None, "event_type": EventType.COMPLAINED},
        FailureClass.COMPLAINT,
        id="complaint",
    ),
    pytest.param(
        {"smtp_status": None, "diagnostic": None, "provider_label": "SpamComplaint"},
        FailureClass.COMPLAINT,
        id="complaint-label",
    ),
    pytest.param(
        {
            "smtp_status": "5.0.0",
            "diagnostic": "550 rejected: listed on Spamhaus",
            "event_type": HARD,
        },
        FailureClass.BLOCK,
        id="blocklist-text-without-decisive-code",
    ),
    pytest.param(
        {"smtp_status": "5.1.1", "diagnostic": "auto-reply: user unknown", "event_type": HARD},
        FailureClass.HARD,
        id="status-beats-auto-reply-text",
    ),
    pytest.param(
        {"smtp_status": None, "diagnostic": None, "event_type": HARD},
        FailureClass.HARD,
        id="label-only-hard",
    ),
    pytest.param(
        {"smtp_status": None, "diagnostic": "unknown failure", "event_type": None},
        FailureClass.SOFT,
        id="nothing-known-soft",
    ),
]


@pytest.mark.parametrize(("signal", "expected"), FAILURE_CASES)
def test_classify_failure(signal: dict, expected: FailureClass) -> None:
    assert classify_failure(**signal) is expected


def test_soft_bounce_limit_reached_on_fifth() -> None:
    policy = SoftBouncePolicy()
    now = datetime(2025, 3, 14, tzinfo=UTC)
    bounces = [now - timedelta(days=days) for days in (29, 20, 10, 1, 0)]

    assert policy.limit_reached(bounces[:4], now=now) is False
    assert policy.limit_reached(bounces, now=now) is True


def test_soft_bounces_outside_window_ignored() -> None:
    policy = SoftBouncePolicy()
    now = datetime(2025, 3, 14, tzinfo=UTC)
    bounces = [now - timedelta(days=days) for days in (30, 40, 10, 1, 0)]

    assert policy.limit_reached(bounces, now=now) is False


def _fixture_entry(name: str) -> dict:
    provider = name.split("/")[0]
    entries = MANIFEST["providers"][provider]["fixtures"]
    return next(entry for entry in entries if entry["file"] == name)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("sendgrid/bounce.json", FailureClass.HARD),
        ("sendgrid/bounce_blocked.json", FailureClass.BLOCK),
        ("sendgrid/bounce_policy_block.json", FailureClass.BLOCK),
        ("sendgrid/spamreport.json", FailureClass.COMPLAINT),
        ("sendgrid/deferred.json", FailureClass.SOFT),
        ("mailgun/failed_temporary.json", FailureClass.SOFT),
        ("mailgun/failed_permanent.json", FailureClass.HARD),
        ("postmark/bounce_soft.json", FailureClass.SOFT),
        ("postmark/bounce_transient.json", FailureClass.SOFT),
        ("ses/bounce_transient_status_wins.json", FailureClass.HARD),
        ("ses/complaint.json", FailureClass.COMPLAINT),
        ("ses/delivery_delay.json", FailureClass.SOFT),
        ("ses/bounce_suppressed.json", None),
        ("ses/delivery.json", None),
    ],
)
async def test_classify_mapped_fixture_event(
    name: str,
    expected: FailureClass | None,
    config: WebhookConfig,
    replay_cache: RedisReplayCache,
    cert_fetcher: CertificateFetcher,
) -> None:
    entry = _fixture_entry(name)
    result = await verify_and_map(
        name.split("/")[0],
        method="POST",
        headers=entry["request"]["headers"],
        body=fixture_bytes(name),
        config=config,
        replay_cache=replay_cache,
        cert_fetcher=cert_fetcher,
        now=TEST_CLOCK,
    )

    assert len(result.events) == 1
    assert classify_event(result.events[0]) is expected


async def test_postmark_autoresponder_is_not_an_event(
    config: WebhookConfig,
    replay_cache: RedisReplayCache,
    cert_fetcher: CertificateFetcher,
) -> None:
    entry = _fixture_entry("postmark/bounce_soft.json")
    record = json.loads(fixture_bytes(entry["file"]))
    record.update(Type="AutoResponder", TypeCode=64, Details="Out of office until Monday")

    result = await verify_and_map(
        "postmark",
        method="POST",
        headers=entry["request"]["headers"],
        body=json.dumps(record).encode(),
        config=config,
        replay_cache=replay_cache,
        cert_fetcher=cert_fetcher,
        now=TEST_CLOCK,
    )

    assert result.events == []
    assert [(s.kind, s.reason) for s in result.skipped] == [
        ("Bounce/AutoResponder", SkipReason.IGNORED)
    ]

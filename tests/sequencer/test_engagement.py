"""Email metric definitions and the human/machine classifier for opens and clicks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.sequencer.engagement import (
    BotRules,
    MessageEngagement,
    TrackingHit,
    Verdict,
    classify_hits,
    compute_metrics,
    compute_metrics_by,
    count_hits,
    rate,
)

DELIVERED = datetime(2024, 6, 4, 10, 0, tzinfo=UTC)
APPLE_MAIL_UA = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
CHROME_UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
SCANNER_UA = "Mozilla/5.0 (compatible; Barracuda Sentinel link scanner)"


def after(seconds: float) -> datetime:
    return DELIVERED + timedelta(seconds=seconds)


# --- case 34: metric definitions --------------------------------------------------------------------


def test_k1_unique_vs_total_over_delivered() -> None:
    messages = [MessageEngagement(f"k1-{index}") for index in range(10)]
    messages[0] = MessageEngagement("k1-0", human_opens=10)
    messages[1] = MessageEngagement("k1-1", human_opens=1, human_clicks=2)

    metrics = compute_metrics(messages)

    assert metrics.sent == 10
    assert metrics.delivered == 10
    assert metrics.total_opens == 11
    assert metrics.unique_opens == 2
    assert metrics.open_rate == pytest.approx(0.20)
    assert metrics.total_clicks == 2
    assert metrics.unique_clicks == 1
    assert metrics.click_rate == pytest.approx(0.10)
    assert metrics.click_to_open == pytest.approx(0.50)
    assert metrics.bounce_rate == 0.0


def test_k2_not_sent_all_rates_none() -> None:
    metrics = compute_metrics([])

    assert metrics.sent == 0
    assert metrics.open_rate is None
    assert metrics.click_rate is None
    assert metrics.click_to_open is None
    assert metrics.bounce_rate is None
    assert metrics.unsubscribe_rate is None


def test_k3_all_bounced() -> None:
    metrics = compute_metrics([MessageEngagement("k3-a", bounced=True), MessageEngagement("k3-b", bounced=True)])

    assert metrics.delivered == 0
    assert metrics.bounces == 2
    assert metrics.bounce_rate == 1.0
    assert metrics.open_rate is None


def test_k4_open_rate_over_delivered() -> None:
    metrics = compute_metrics(
        [MessageEngagement("k4-a", bounced=True), MessageEngagement("k4-b", human_opens=1), MessageEngagement("k4-c")]
    )

    assert metrics.delivered == 2
    assert metrics.open_rate == pytest.approx(0.50)
    assert metrics.bounce_rate == pytest.approx(1 / 3)


def test_machine_opens_and_bot_clicks_kept_apart() -> None:
    metrics = compute_metrics([MessageEngagement("m", machine_opens=3, bot_clicks=6)])

    assert metrics.machine_opens == 3
    assert metrics.bot_clicks == 6
    assert metrics.unique_opens == 0
    assert metrics.open_rate == 0.0
    assert metrics.click_rate == 0.0


def test_click_without_open_counts_as_open() -> None:
    metrics = compute_metrics([MessageEngagement("m", human_clicks=1)])

    assert metrics.unique_opens == 1
    assert metrics.click_to_open == 1.0


def test_stale_bounce_on_opened_message_ignored() -> None:
    metrics = compute_metrics([MessageEngagement("m", bounced=True, human_opens=1)])

    assert metrics.delivered == 1
    assert metrics.bounces == 0


def test_unsent_messages_not_counted() -> None:
    metrics = compute_metrics([MessageEngagement("m", sent=False), MessageEngagement("n", unsubscribed=True)])

    assert metrics.sent == 1
    assert metrics.unsubscribes == 1
    assert metrics.unsubscribe_rate == 1.0


def test_metrics_per_step() -> None:
    messages = [
        MessageEngagement("a", step_id="welcome", human_opens=1),
        MessageEngagement("b", step_id="welcome"),
        MessageEngagement("c", step_id="follow-up", bounced=True),
    ]

    by_step = compute_metrics_by(messages, key=lambda message: message.step_id)

    assert by_step["welcome"].open_rate == 0.5
    assert by_step["follow-up"].bounce_rate == 1.0
    assert by_step["follow-up"].open_rate is None


def test_rate_guards() -> None:
    assert rate(0, 0) is None
    with pytest.raises(ValueError, match="outside"):
        rate(3, 2)
    with pytest.raises(ValueError, match="negative"):
        MessageEngagement("m", human_opens=-1)


message_strategy = st.builds(
    MessageEngagement,
    message_id=st.text(min_size=1, max_size=5),
    sent=st.booleans(),
    bounced=st.booleans(),
    human_opens=st.integers(0, 20),
    machine_opens=st.integers(0, 5),
    human_clicks=st.integers(0, 20),
    bot_clicks=st.integers(0, 5),
    unsubscribed=st.booleans(),
    complained=st.booleans(),
)


@given(st.lists(message_strategy, max_size=30))
def test_every_rate_within_bounds(messages: list[MessageEngagement]) -> None:
    metrics = compute_metrics(messages)

    for value in (metrics.open_rate, metrics.click_rate, metrics.click_to_open, metrics.bounce_rate, metrics.unsubscribe_rate):
        assert value is None or 0.0 <= value <= 1.0
    assert metrics.delivered + metrics.bounces == metrics.sent
    assert metrics.unique_clicks <= metrics.unique_opens <= metrics.delivered


# --- case 30: who opened or clicked -------------------------------------------------------------------


def test_case30a_provider_machine_open() -> None:
    [result] = classify_hits([TrackingHit("open", after(40), CHROME_UA, "198.51.100.7", provider_machine_open=True)], delivered_at=DELIVERED)

    assert result.verdict is Verdict.MACHINE
    assert "provider_machine_open" in result.reasons
    counts = count_hits([result])
    metrics = compute_metrics([MessageEngagement("m", human_opens=counts.human_opens, machine_opens=counts.machine_opens)])
    assert metrics.unique_opens == 0
    assert metrics.machine_opens == 1


def test_case30b_scanner_burst_of_links() -> None:
    links = [f"https://example.com/{index}" for index in range(5)] + ["https://go.example.com/u/TOKEN"]
    hits = [TrackingHit("click", after(index * 0.5), SCANNER_UA, "203.0.113.9", url) for index, url in enumerate(links)]

    results = classify_hits(hits, delivered_at=DELIVERED)

    assert all(result.verdict is Verdict.BOT for result in results)
    assert all("link_burst" in result.reasons for result in results)
    assert count_hits(results).human_clicks == 0
    assert count_hits(results).bot_clicks == 6


def test_case30b_burst_detected_without_scanner_agent() -> None:
    hits = [TrackingHit("click", after(60 + index), CHROME_UA, "203.0.113.9", f"https://example.com/{index}") for index in range(3)]

    results = classify_hits(hits, delivered_at=DELIVERED)

    assert [result.reasons for result in results] == [("link_burst",)] * 3


def test_case30d_single_late_webkit_open_is_human() -> None:
    [result] = classify_hits([TrackingHit("open", after(25 * 60), APPLE_MAIL_UA, "198.51.100.7")], delivered_at=DELIVERED)

    assert result.verdict is Verdict.HUMAN
    assert result.reasons == ()


def test_apple_privacy_prefetch_is_machine() -> None:
    bare = TrackingHit("open", after(3), "Mozilla/5.0", "198.51.100.7")
    apple_ip = TrackingHit("open", after(3 * 3600), APPLE_MAIL_UA, "17.58.101.4")

    results = classify_hits([bare, apple_ip], delivered_at=DELIVERED)

    assert results[0].reasons == ("bare_user_agent",)
    assert results[1].reasons == ("apple_privacy_proxy",)
    assert {result.verdict for result in results} == {Verdict.MACHINE}


def test_scanner_open_from_burst_address_is_machine() -> None:
    hits = [TrackingHit("click", after(1 + index), CHROME_UA, "203.0.113.9", f"https://example.com/{index}") for index in range(3)]
    hits.append(TrackingHit("open", after(1), CHROME_UA, "203.0.113.9"))

    results = classify_hits(hits, delivered_at=DELIVERED)

    assert results[-1].verdict is Verdict.MACHINE
    assert "scanner_address" in results[-1].reasons


def test_click_right_after_delivery_is_bot() -> None:
    [result] = classify_hits([TrackingHit("click", after(2), CHROME_UA, "198.51.100.7", "https://example.com")], delivered_at=DELIVERED)

    assert result.reasons == ("too_soon_after_delivery",)


def test_click_before_delivery_event_is_bot() -> None:
    [result] = classify_hits([TrackingHit("click", after(-30), CHROME_UA, "198.51.100.7", "https://example.com")], delivered_at=DELIVERED)

    assert result.verdict is Verdict.BOT


def test_human_click_and_repeat_of_same_link() -> None:
    hits = [
        TrackingHit("click", after(600), CHROME_UA, "198.51.100.7", "https://example.com/a"),
        TrackingHit("click", after(602), CHROME_UA, "198.51.100.7", "https://example.com/a"),
        TrackingHit("click", after(604), CHROME_UA, "198.51.100.7", "https://example.com/b"),
    ]

    results = classify_hits(hits, delivered_at=DELIVERED)

    assert {result.verdict for result in results} == {Verdict.HUMAN}


@pytest.mark.parametrize(
    ("user_agent", "scanner"),
    [
        ("Mozilla/5.0 (Linux; Android 10; CUBOT X30) AppleWebKit/537.36 Chrome/120 Mobile Safari/537.36", False),
        (CHROME_UA, False),
        (APPLE_MAIL_UA, False),
        ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", True),
        ("Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", True),
        ("python-requests/2.31.0", True),
        ("curl/8.5.0", True),
        ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 HeadlessChrome/120.0 Safari/537.36", True),
        ("Java/17.0.2", True),
        ("Mozilla/5.0 (compatible; proofpoint url defense)", True),
    ],
)
def test_scanner_user_agents(user_agent: str, scanner: bool) -> None:
    assert BotRules().scanner_agent(user_agent) is scanner


def test_no_user_agent_is_not_human() -> None:
    results = classify_hits(
        [TrackingHit("open", after(600), None, "198.51.100.7"), TrackingHit("click", after(600), "", "198.51.100.7", "https://x.io")],
        delivered_at=DELIVERED,
    )

    assert [result.verdict for result in results] == [Verdict.MACHINE, Verdict.BOT]


def test_unknown_delivery_disables_timing_rule() -> None:
    [result] = classify_hits([TrackingHit("click", after(1), CHROME_UA, "198.51.100.7", "https://x.io")], delivered_at=None)

    assert result.verdict is Verdict.HUMAN


def test_custom_rules() -> None:
    rules = BotRules(apple_proxy_networks=("2001:db8::/32",), burst_min_distinct_links=2)
    hits = [
        TrackingHit("open", after(600), APPLE_MAIL_UA, "2001:db8::1"),
        TrackingHit("click", after(600), CHROME_UA, "198.51.100.7", "https://x.io/1"),
        TrackingHit("click", after(601), CHROME_UA, "198.51.100.7", "https://x.io/2"),
    ]

    results = classify_hits(hits, delivered_at=DELIVERED, rules=rules)

    assert [result.verdict for result in results] == [Verdict.MACHINE, Verdict.BOT, Verdict.BOT]

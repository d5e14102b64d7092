"""MIME message building, SMTP outcome classification and retry backoff."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.headerregistry import Address

import pytest

from services.sequencer.sending import (
    DEFAULT_RETRY_POLICY,
    MessageBuildError,
    RetryPolicy,
    SmtpOutcomeKind,
    build_message,
    classify_smtp_reply,
    new_message_id,
    parse_smtp_reply,
)

SENT_AT = datetime(2024, 6, 4, 8, 0, tzinfo=UTC)
LONG_UNSUBSCRIBE = "https://go.example.com/u/" + "eyJtIjoibTEiLCJjIjoiYzEiLCJ0IjoxNzE3NDg4MDAwfQ" * 3 + ".c2lnbmF0dXJl"


def message(**overrides: object):
    arguments: dict[str, object] = {
        "sender": Address("Acme News", "news", "mail.example.com"),
        "recipient": "Jürgen Groß <jurgen@example.de>",
        "subject": "Grüße – your guide to pricing",
        "text": "Hello\n\nUnsubscribe: " + LONG_UNSUBSCRIBE,
        "html": "<p>Hello</p>",
        "message_id": "<abc123@mail.example.com>",
        "unsubscribe_url": LONG_UNSUBSCRIBE,
        "unsubscribe_mailto": "mailto:unsubscribe@mail.example.com?subject=abc123",
        "sent_at": SENT_AT,
    }
    arguments.update(overrides)
    return build_message(**arguments)  # type: ignore[arg-type]


def reparse(built) -> object:
    return message_from_bytes(built.as_bytes(), policy=policy.default)


def test_message_is_multipart_alternative_text_then_html() -> None:
    parsed = reparse(message())

    assert parsed.get_content_type() == "multipart/alternative"
    parts = list(parsed.iter_parts())
    assert [part.get_content_type() for part in parts] == ["text/plain", "text/html"]
    assert parts[0].get_content().startswith("Hello")
    assert parts[1].get_content().strip() == "<p>Hello</p>"


def test_headers_survive_wire_format() -> None:
    parsed = reparse(message())

    assert parsed["Subject"] == "Grüße – your guide to pricing"
    assert parsed["To"].addresses[0].addr_spec == "jurgen@example.de"
    assert parsed["From"].addresses[0].display_name == "Acme News"
    assert parsed["Message-ID"] == "<abc123@mail.example.com>"
    assert parsed["Date"].datetime == SENT_AT


def test_list_unsubscribe_headers_rfc8058() -> None:
    raw = message().as_bytes()
    parsed = reparse(message())

    expected = f"<{LONG_UNSUBSCRIBE}>, <mailto:unsubscribe@mail.example.com?subject=abc123>"
    assert parsed["List-Unsubscribe"] == expected
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # The long URL must appear literally, not as RFC 2047 encoded words.
    assert f"List-Unsubscribe: <{LONG_UNSUBSCRIBE}>".encode() in raw
    assert b"=?utf-8?q?=3Chttps" not in raw


def test_list_unsubscribe_without_mailto() -> None:
    parsed = reparse(message(unsubscribe_mailto=None))

    assert parsed["List-Unsubscribe"] == f"<{LONG_UNSUBSCRIBE}>"


def test_lines_use_crlf() -> None:
    raw = message().as_bytes()

    assert b"\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in raw


def test_message_ids_unique_and_well_formed() -> None:
    ids = {new_message_id("mail.example.com") for _ in range(1000)}

    assert len(ids) == 1000
    assert all(item.startswith("<") and item.endswith("@mail.example.com>") for item in ids)


@pytest.mark.parametrize("domain", ["", "localhost", "bad domain.com", "-x.example.com", "a@b.com"])
def test_message_id_rejects_bad_domain(domain: str) -> None:
    with pytest.raises(MessageBuildError, match="message id domain"):
        new_message_id(domain)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"subject": "Hi\r\nBcc: all@example.com"}, "subject must not contain line breaks"),
        ({"recipient": "a@example.com\nBcc: b@example.com"}, "recipient must not contain line breaks"),
        ({"recipient": "nobody"}, "recipient must be an email address"),
        ({"unsubscribe_url": "http://go.example.com/u/x"}, "absolute https URL"),
        ({"unsubscribe_url": "https://go.example.com/u/a,b"}, "must not contain"),
        ({"unsubscribe_url": "https://go.example.com/u/" + "a" * 1000}, "exceed 900"),
        ({"unsubscribe_mailto": "unsubscribe@example.com"}, "mailto: URI"),
        ({"message_id": "abc@mail.example.com"}, "message_id must look like"),
        ({"sent_at": datetime(2024, 6, 4, 8, 0)}, "sent_at must be an aware datetime"),
        ({"extra_headers": {"List-Unsubscribe": "<https://evil.example>"}}, "would replace"),
        ({"extra_headers": {"X-Campaign": "a\nb"}}, "must not contain line breaks"),
        ({"extra_headers": {"Bad Header": "x"}}, "not a valid header field name"),
    ],
)
def test_build_rejects_bad_input(overrides: dict[str, object], fragment: str) -> None:
    with pytest.raises((MessageBuildError, ValueError), match=fragment):
        message(**overrides)


def test_non_ascii_body_round_trips_as_8bit() -> None:
    built = message(text="Grüße aus Köln\n", html="<p>Grüße – 10 €</p>")
    raw = built.as_bytes()
    parts = list(reparse(built).iter_parts())

    assert b"Content-Transfer-Encoding: 8bit" in raw
    assert "Grüße – 10 €".encode() in raw
    # The parser keeps the wire's CRLF line ends in an 8bit body.
    assert parts[0].get_content().replace("\r\n", "\n") == "Grüße aus Köln\n"
    assert parts[1].get_content().replace("\r\n", "\n") == "<p>Grüße – 10 €</p>\n"


def test_line_over_998_octets_goes_base64() -> None:
    html = "<p>" + "ü" * 600 + "</p>"
    built = message(html=html)
    raw = built.as_bytes()
    html_part = list(reparse(built).iter_parts())[1]

    assert html_part["Content-Transfer-Encoding"] == "base64"
    assert html_part.get_content() == html + "\n"
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998


def test_long_subject_folds_into_encoded_words() -> None:
    subject = "Grüße, " + "a guide to pricing that keeps going " * 6
    raw = message(subject=subject).as_bytes()

    assert reparse(message(subject=subject))["Subject"] == subject
    assert all(len(line) <= 78 for line in raw.split(b"\r\n\r\n")[0].split(b"\r\n") if b"=?utf-8?" in line)


def test_separators_inside_a_line_are_kept() -> None:
    text = "a\u2028b\x0cc\x85d\x1de"
    parts = list(reparse(message(text=text, html=f"<p>{text}</p>")).iter_parts())

    assert parts[0].get_content().replace("\r\n", "\n") == text + "\n"
    assert parts[1].get_content().replace("\r\n", "\n") == f"<p>{text}</p>\n"


@pytest.mark.parametrize(
    "subject",
    ["x" * 70, "https://example.com/" + "a" * 60 + " is ready", "x" * 255, "y" * 1200],
    ids=["70 characters", "URL first", "255 characters", "1200 characters"],
)
def test_subject_with_a_long_first_word_round_trips(subject: str) -> None:
    built = message(subject=subject)

    assert reparse(built)["Subject"] == subject
    assert max(len(line) for line in built.as_bytes().split(b"\r\n")) <= 998


def test_long_header_values_stay_within_998_octets() -> None:
    name = "é" * 100
    built = message(extra_headers={"X-Campaign": "x" * 1200}, sender=Address(name, "news", "mail.example.com"))
    parsed = reparse(built)

    assert parsed["X-Campaign"] == "x" * 1200
    assert parsed["From"].addresses[0].display_name == name
    assert max(len(line) for line in built.as_bytes().split(b"\r\n")) <= 998


def test_display_name_too_long_for_a_line_rejected() -> None:
    with pytest.raises(MessageBuildError, match="sender is longer than 900 characters"):
        message(sender=Address("é" * 400, "news", "mail.example.com"))


@pytest.mark.parametrize(
    "overrides",
    [
        {"subject": "Hello\x0bWorld"},
        {"subject": "Hello\x0cBcc: evil@example.net"},
        {"sender": Address("Acme\x0bNews", "news", "mail.example.com")},
        {"extra_headers": {"X-Campaign": "a\x1eb"}},
    ],
)
def test_control_characters_in_headers_rejected(overrides: dict[str, object]) -> None:
    with pytest.raises(MessageBuildError, match="control characters"):
        message(**overrides)


def test_internationalised_domain_is_sent_as_punycode() -> None:
    parsed = reparse(message(recipient="Jürgen <jurgen@bücher.example>"))

    assert parsed["To"].addresses[0].addr_spec == "jurgen@xn--bcher-kva.example"
    assert parsed["To"].addresses[0].display_name == "Jürgen"


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"recipient": "jürgen@example.de"}, "non-ASCII local part"),
        ({"unsubscribe_url": "https://go.example.com/ü"}, "must be ASCII"),
        ({"message_id": "<ü@mail.example.com>"}, "message_id must look like"),
    ],
)
def test_non_ascii_header_input_rejected(overrides: dict[str, object], fragment: str) -> None:
    with pytest.raises(MessageBuildError, match=fragment):
        message(**overrides)


def test_extra_headers_and_reply_to() -> None:
    parsed = reparse(message(extra_headers={"X-Nurture-Step": "welcome"}, reply_to="sales@example.com"))

    assert parsed["X-Nurture-Step"] == "welcome"
    assert parsed["Reply-To"] == "sales@example.com"


# --- SMTP outcomes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "enhanced", "kind"),
    [
        (250, "2.0.0", SmtpOutcomeKind.ACCEPTED),
        (250, None, SmtpOutcomeKind.ACCEPTED),
        (550, "5.1.1", SmtpOutcomeKind.PERMANENT),
        (552, "5.2.2", SmtpOutcomeKind.PERMANENT),
        (554, None, SmtpOutcomeKind.PERMANENT),
        (454, "4.7.0", SmtpOutcomeKind.TRANSIENT),
        (421, None, SmtpOutcomeKind.TRANSIENT),
        (451, "4.3.0", SmtpOutcomeKind.TRANSIENT),
        (450, "5.1.1", SmtpOutcomeKind.PERMANENT),
        (550, "4.2.2", SmtpOutcomeKind.TRANSIENT),
        (None, None, SmtpOutcomeKind.TRANSIENT),
    ],
)
def test_classify_smtp_reply(code: int | None, enhanced: str | None, kind: SmtpOutcomeKind) -> None:
    outcome = classify_smtp_reply(code, enhanced)

    assert outcome.kind is kind
    assert outcome.retry is (kind is SmtpOutcomeKind.TRANSIENT)
    assert outcome.counts_as_bounce is (kind is SmtpOutcomeKind.PERMANENT)


@pytest.mark.parametrize(("code", "enhanced"), [(99, None), (600, None), (550, "5.1"), (550, "9.1.1"), (550, "x")])
def test_classify_rejects_invalid(code: int, enhanced: str | None) -> None:
    with pytest.raises(ValueError):
        classify_smtp_reply(code, enhanced)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("550 5.1.1 <b@example.com>: user unknown", (550, "5.1.1")),
        ("454 4.7.0 TLS not available", (454, "4.7.0")),
        ("421 Service not available, closing channel", (421, None)),
        ("250-2.0.0 OK", (250, "2.0.0")),
        ("550", (550, None)),
    ],
)
def test_parse_smtp_reply(reply: str, expected: tuple[int, str | None]) -> None:
    assert parse_smtp_reply(reply) == expected


def test_parse_smtp_reply_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="three-digit code"):
        parse_smtp_reply("hello")


# --- retries ----------------------------------------------------------------------------------------


def test_backoff_grows_and_is_bounded() -> None:
    policy_ = RetryPolicy(max_attempts=6, base_delay=timedelta(minutes=5), factor=3, max_delay=timedelta(hours=1))

    delays = [policy_.delay_after(attempt) for attempt in range(1, 7)]

    assert delays == [
        timedelta(minutes=5),
        timedelta(minutes=15),
        timedelta(minutes=45),
        timedelta(hours=1),
        timedelta(hours=1),
        None,
    ]


def test_next_attempt_at() -> None:
    assert DEFAULT_RETRY_POLICY.next_attempt_at(1, SENT_AT) == SENT_AT + timedelta(minutes=5)
    assert DEFAULT_RETRY_POLICY.next_attempt_at(DEFAULT_RETRY_POLICY.max_attempts, SENT_AT) is None
    with pytest.raises(ValueError, match="aware"):
        DEFAULT_RETRY_POLICY.next_attempt_at(1, datetime(2024, 1, 1))


def test_retry_policy_validates() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="factor"):
        RetryPolicy(factor=0.5)
    with pytest.raises(ValueError, match="attempts_made"):
        DEFAULT_RETRY_POLICY.delay_after(0)


@dataclass
class _Recipient:
    status: str = "pending"
    attempts: int = 0
    next_attempt_at: datetime | None = None
    delivered: int = 0


@dataclass
class _FakeProvider:
    """Returns scripted SMTP replies per recipient and counts calls."""

    script: dict[str, list[tuple[int, str]]]
    calls: dict[str, int] = field(default_factory=dict)

    def send(self, name: str) -> tuple[int, str]:
        self.calls[name] = self.calls.get(name, 0) + 1
        replies = self.script.get(name, [])
        return replies.pop(0) if replies else (250, "2.0.0")


def test_batch_outcomes_recorded_per_recipient() -> None:
    # A permanent failure for B and two transient failures for D must neither resend to others nor
    # drop D; each run handles only recipients that are due.
    provider = _FakeProvider({"B": [(550, "5.1.1")], "D": [(454, "4.7.0"), (454, "4.7.0")]})
    recipients = {name: _Recipient() for name in "ABCDE"}
    clock = SENT_AT

    for _ in range(4):
        for name, state in recipients.items():
            due = state.status == "pending" or (state.status == "retrying" and state.next_attempt_at <= clock)
            if not due:
                continue
            code, enhanced = provider.send(name)
            state.attempts += 1
            outcome = classify_smtp_reply(code, enhanced)
            if outcome.kind is SmtpOutcomeKind.ACCEPTED:
                state.status, state.delivered = "sent", state.delivered + 1
            elif outcome.retry and (next_at := DEFAULT_RETRY_POLICY.next_attempt_at(state.attempts, clock)):
                state.status, state.next_attempt_at = "retrying", next_at
            else:
                state.status = "failed_permanent"
        clock += timedelta(hours=1)

    assert {name: state.delivered for name, state in recipients.items()} == {"A": 1, "B": 0, "C": 1, "D": 1, "E": 1}
    assert recipients["B"].status == "failed_permanent"
    assert recipients["D"].status == "sent"
    assert recipients["D"].attempts == 3
    assert [provider.calls[name] for name in "ACE"] == [1, 1, 1]
    assert sum(state.status == "sent" for state in recipients.values()) == 4


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/u/token", "http://localhost/u/token", "http://[::1]:8000/u/token"])
def test_loopback_http_unsubscribe_allowed(url: str) -> None:
    built = message(unsubscribe_url=url, unsubscribe_mailto=None)

    assert built["List-Unsubscribe"] == f"<{url}>"


@pytest.mark.parametrize("url", ["http://10.0.0.1/u/token", "http://127.0.0.1.example.com/u/token"])
def test_non_loopback_http_unsubscribe_rejected(url: str) -> None:
    with pytest.raises(MessageBuildError, match="absolute https URL"):
        message(unsubscribe_url=url)

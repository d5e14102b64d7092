"""The simulated mail clients: what they read from a sent email and how often they open and click."""

import random
from datetime import UTC, datetime

import httpx

from services.cli.demo.dataset import sample_leads
from services.cli.demo.mailbox import Mailbox, parse_message
from services.cli.demo.playbook import TEMPLATES
from services.cli.demo.recipients import CLICK_PROBABILITY, OPEN_PROBABILITY, Recipients
from services.kit.tokens import TokenSigner
from services.sequencer.sending import tracking_links
from services.sequencer.sending.message import build_message
from services.sequencer.templates import EmailTemplate, Recipient, render_email

SECRET = "demo-test-tracking-secret-0123456789abcdef"


def _sent_email(recipient: str, step: str = "rates") -> bytes:
    links = tracking_links(TokenSigner([SECRET]), "http://127.0.0.1:8000", message_id="<m1@nurture.example>", contact_id="c1")
    template = TEMPLATES[step]
    rendered = render_email(EmailTemplate(template["subject"], template["html"]), Recipient({"email": recipient}), links)
    message = build_message(
        sender="Nurture <hello@nurture.example>",
        recipient=recipient,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        message_id="<m1@nurture.example>",
        unsubscribe_url=links.unsubscribe_url(),
        sent_at=datetime(2026, 1, 5, 9, tzinfo=UTC),
        extra_headers={"X-Nurture-Enrolment": "enr_1", "X-Nurture-Step": step},
    )
    return message.as_bytes()


def test_message_gives_pixel_and_link_paths() -> None:
    delivered = parse_message("a.eml", _sent_email("Lead00001@Example.com"))

    assert delivered.recipient == "lead00001@example.com"
    assert delivered.enrolment == "enr_1"
    assert delivered.step == "rates"
    assert delivered.open_path is not None and delivered.open_path.startswith("/t/o/")
    assert len(delivered.click_paths) == 1
    assert delivered.click_paths[0].startswith("/t/c/")


def test_mailbox_returns_each_email_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "old.eml").write_bytes(_sent_email("lead00001@example.com"))
    mailbox = Mailbox(tmp_path)
    mailbox.skip_existing()
    (tmp_path / "new.eml").write_bytes(_sent_email("lead00002@example.com"))

    first = mailbox.new_messages()
    second = mailbox.new_messages()

    assert [message.recipient for message in first] == ["lead00002@example.com"]
    assert second == []


def _rates(leads: list, draws: int) -> tuple[float, float]:  # type: ignore[type-arg]
    recipients = Recipients(httpx.AsyncClient(), {lead.email: lead for lead in leads}, random.Random(7))
    message = parse_message("a.eml", _sent_email(leads[0].email))
    outcomes = [recipients.decide(message) for _ in range(draws)]
    opened = sum(1 for paths in outcomes if paths) / draws
    clicked = sum(1 for paths in outcomes if len(paths) == 2) / max(1, sum(1 for paths in outcomes if paths))
    return opened, clicked


def test_subscribers_open_and_click_more() -> None:
    leads = sample_leads(200)
    subscriber = next(lead for lead in leads if lead.subscribed)
    other = next(lead for lead in leads if not lead.subscribed)

    opened_yes, clicked_yes = _rates([subscriber], 4000)
    opened_no, clicked_no = _rates([other], 4000)

    assert abs(opened_yes - OPEN_PROBABILITY[True]) < 0.03
    assert abs(opened_no - OPEN_PROBABILITY[False]) < 0.03
    assert abs(clicked_yes - CLICK_PROBABILITY[True]) < 0.04
    assert abs(clicked_no - CLICK_PROBABILITY[False]) < 0.04


def test_engagement_depends_on_the_outcome_alone() -> None:
    leads = sample_leads(200)
    subscribers = [lead for lead in leads if lead.subscribed][:2]
    assert subscribers[0].attributes != subscribers[1].attributes

    assert _rates([subscribers[0]], 500) == _rates([subscribers[1]], 500)


def test_unknown_recipient_reads_nothing() -> None:
    recipients = Recipients(httpx.AsyncClient(), {}, random.Random(1))

    assert recipients.decide(parse_message("a.eml", _sent_email("someone@example.com"))) == []

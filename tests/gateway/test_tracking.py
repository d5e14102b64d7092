"""Open pixel, click redirect and unsubscribe pages, with signed tokens and bot classification."""

import base64
import json
import uuid
from datetime import timedelta

import httpx
import pytest
from sqlmodel import select

from services.cli.supervisor import free_port
from services.gateway.tracking.models import TrackingHit
from services.gateway.tracking.pages import PIXEL_GIF, unsubscribe_page
from services.kit import clock
from services.kit.db import Database
from services.kit.http import ServiceClient
from services.kit.problems import PROBLEM_MEDIA_TYPE
from services.kit.tokens import TokenSigner

from .conftest import Gateway, unique_email

# The backoff after a row's first failed attempt: 2 ** attempts seconds.
RETRY_AFTER_FIRST_FAILURE_S = 2


@pytest.fixture
def gateway(module_gateway: Gateway) -> Gateway:
    """The module's gateway, with the deliveries of earlier tests forgotten."""
    module_gateway.queue.enqueued.clear()
    return module_gateway

HUMAN = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0 Safari/537.36"
APPLE_MAIL = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
SCANNER = "Mozilla/5.0 (compatible; Barracuda Sentinel link scanner)"


async def new_contact(gateway: Gateway) -> str:
    response = await gateway.client.post("/v1/contacts", json={"email": unique_email()}, headers=gateway.auth)
    assert response.status_code == 201, response.text
    return response.json()["id"]  # type: ignore[no-any-return]


def signer(gateway: Gateway) -> TokenSigner:
    return gateway.app.state.token_signer  # type: ignore[no-any-return]


async def timeline(gateway: Gateway, contact_id: str) -> list[dict[str, object]]:
    await gateway.deliver_enqueued()
    response = await gateway.client.get(f"/v1/contacts/{contact_id}/timeline", headers=gateway.auth)
    assert response.status_code == 200
    return response.json()["items"]  # type: ignore[no-any-return]


async def consent(gateway: Gateway, contact_id: str) -> dict[str, object]:
    response = await gateway.client.get(f"/v1/contacts/{contact_id}/consent", headers=gateway.auth)
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


def tampered(token: str, **changes: str) -> str:
    """Change claims in a token's payload and keep its signature, as a forger would."""
    payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    encoded = base64.urlsafe_b64encode(json.dumps(claims, separators=(",", ":")).encode()).rstrip(b"=").decode()
    return f"{encoded}.{signature}"


async def test_open_pixel_records_open(gateway: Gateway) -> None:
    contact_id, message_id = await new_contact(gateway), f"<{uuid.uuid4().hex}@nurture.example>"
    token = signer(gateway).sign_open(message_id, contact_id)

    response = await gateway.client.get(f"/t/o/{token}", headers={"User-Agent": HUMAN})
    [event] = await timeline(gateway, contact_id)

    assert response.status_code == 200
    assert response.headers["content-type"] == "image/gif"
    assert response.content == PIXEL_GIF
    assert "no-store" in response.headers["cache-control"]
    assert event["type"] == "email_opened"
    properties = event["properties"]
    assert isinstance(properties, dict)
    assert properties["message_id"] == message_id
    assert properties["contact_id"] == contact_id
    assert properties["user_agent"] == HUMAN
    assert properties["ip"] == "127.0.0.1"
    assert properties["machine"] is False


@pytest.mark.parametrize(
    ("user_agent", "machine"),
    [(APPLE_MAIL, False), ("Mozilla/5.0", True), (SCANNER, True), ("", True)],
    ids=["apple_mail_person", "privacy_proxy", "scanner", "no_user_agent"],
)
async def test_open_machine_flag(gateway: Gateway, user_agent: str, machine: bool) -> None:
    contact_id = await new_contact(gateway)
    token = signer(gateway).sign_open(f"<{uuid.uuid4().hex}@nurture.example>", contact_id)

    await gateway.client.get(f"/t/o/{token}", headers={"User-Agent": user_agent})
    [event] = await timeline(gateway, contact_id)

    assert event["properties"]["machine"] is machine  # type: ignore[index]


async def test_click_redirects_to_signed_url(gateway: Gateway) -> None:
    contact_id, message_id = await new_contact(gateway), f"<{uuid.uuid4().hex}@nurture.example>"
    url = "https://example.com/pricing?plan=team&utm_source=nurture"
    token = signer(gateway).sign_click(message_id, contact_id, url)

    response = await gateway.client.get(f"/t/c/{token}", headers={"User-Agent": HUMAN})
    [event] = await timeline(gateway, contact_id)

    assert response.status_code == 302
    assert response.headers["location"] == url
    assert "no-store" in response.headers["cache-control"]
    assert event["type"] == "email_clicked"
    assert event["properties"]["url"] == url  # type: ignore[index]
    assert event["properties"]["bot"] is False  # type: ignore[index]


@pytest.mark.parametrize("forgery", ["other_url", "open_token", "garbage", "truncated"])
async def test_bad_click_token_never_redirects(gateway: Gateway, forgery: str) -> None:
    contact_id = await new_contact(gateway)
    good = signer(gateway).sign_click("<m@nurture.example>", contact_id, "https://example.com/a")
    token = {
        "other_url": tampered(good, u="https://evil.example/phish"),
        "open_token": signer(gateway).sign_open("<m@nurture.example>", contact_id),
        "garbage": "not-a-token",
        "truncated": good[:-3],
    }[forgery]

    response = await gateway.client.get(f"/t/c/{token}")

    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert "location" not in response.headers
    assert gateway.queue.enqueued == []


async def test_scanner_burst_is_bot(gateway: Gateway) -> None:
    contact_id, message_id = await new_contact(gateway), f"<{uuid.uuid4().hex}@nurture.example>"
    links = [f"https://example.com/page/{number}" for number in range(5)]
    scanner = {"User-Agent": SCANNER}

    clicks = [
        await gateway.client.get(f"/t/c/{signer(gateway).sign_click(message_id, contact_id, link)}", headers=scanner)
        for link in links
    ]
    page = await gateway.client.get(f"/u/{signer(gateway).sign_unsubscribe(message_id, contact_id)}", headers=scanner)
    events = await timeline(gateway, contact_id)

    assert [response.status_code for response in clicks] == [302] * 5
    assert page.status_code == 200
    assert len(events) == 5
    assert all(event["properties"]["bot"] is True for event in events)  # type: ignore[index]
    assert (await consent(gateway, contact_id))["consent"]["status"] == "subscribed"  # type: ignore[index]


async def test_link_burst_with_browser_agent_is_bot(gateway: Gateway) -> None:
    contact_id, message_id = await new_contact(gateway), f"<{uuid.uuid4().hex}@nurture.example>"

    for number in range(3):
        token = signer(gateway).sign_click(message_id, contact_id, f"https://example.com/doc/{number}")
        await gateway.client.get(f"/t/c/{token}", headers={"User-Agent": HUMAN})
    events = sorted(await timeline(gateway, contact_id), key=lambda event: str(event["properties"]["url"]))  # type: ignore[index]

    assert [event["properties"]["bot"] for event in events] == [False, False, True]  # type: ignore[index]
    assert events[2]["properties"]["classification_reasons"] == ["link_burst"]  # type: ignore[index]


async def test_unsubscribe_page_changes_nothing(gateway: Gateway) -> None:
    contact_id = await new_contact(gateway)
    token = signer(gateway).sign_unsubscribe("<m@nurture.example>", contact_id)

    response = await gateway.client.get(f"/u/{token}", headers={"User-Agent": HUMAN})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "no-store" in response.headers["cache-control"]
    assert '<form method="post"' in response.text
    assert (await consent(gateway, contact_id))["consent"]["status"] == "subscribed"  # type: ignore[index]
    assert await timeline(gateway, contact_id) == []


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        ("confirm=unsubscribe", "application/x-www-form-urlencoded"),
        ("List-Unsubscribe=One-Click", "application/x-www-form-urlencoded"),
        ("List-Unsubscribe=One-Click", None),
    ],
    ids=["form", "one_click", "one_click_without_content_type"],
)
async def test_unsubscribe_post_unsubscribes(gateway: Gateway, content: str, content_type: str | None) -> None:
    contact_id = await new_contact(gateway)
    token = signer(gateway).sign_unsubscribe("<m@nurture.example>", contact_id)
    headers = {"Content-Type": content_type} if content_type else {}

    response = await gateway.client.post(f"/u/{token}", content=content, headers=headers)
    state = await consent(gateway, contact_id)

    assert response.status_code == 200
    assert "You are unsubscribed" in response.text
    assert state["consent"]["status"] == "unsubscribed"  # type: ignore[index]
    assert state["history"][-1]["source"] == "unsubscribe_link"  # type: ignore[index]


async def test_one_click_multipart_body(gateway: Gateway) -> None:
    contact_id = await new_contact(gateway)
    token = signer(gateway).sign_unsubscribe("<m@nurture.example>", contact_id)

    response = await gateway.client.post(f"/u/{token}", files={"List-Unsubscribe": (None, "One-Click")})

    assert response.status_code == 200
    assert (await consent(gateway, contact_id))["consent"]["status"] == "unsubscribed"  # type: ignore[index]


async def test_unsubscribe_is_idempotent(gateway: Gateway) -> None:
    contact_id = await new_contact(gateway)
    token = signer(gateway).sign_unsubscribe("<m@nurture.example>", contact_id)
    form = {"Content-Type": "application/x-www-form-urlencoded"}

    responses = [await gateway.client.post(f"/u/{token}", content="List-Unsubscribe=One-Click", headers=form) for _ in range(3)]
    events = await timeline(gateway, contact_id)

    assert [response.status_code for response in responses] == [200, 200, 200]
    assert [event["type"] for event in events] == ["unsubscribed"]


async def test_token_cannot_unsubscribe_another_contact(gateway: Gateway) -> None:
    holder, victim = await new_contact(gateway), await new_contact(gateway)
    token = signer(gateway).sign_unsubscribe("<m@nurture.example>", holder)
    form = {"Content-Type": "application/x-www-form-urlencoded"}

    forged = await gateway.client.post(f"/u/{tampered(token, c=victim)}", content="List-Unsubscribe=One-Click", headers=form)
    genuine = await gateway.client.post(f"/u/{token}", content="List-Unsubscribe=One-Click", headers=form)

    assert forged.status_code == 404
    assert genuine.status_code == 200
    assert (await consent(gateway, victim))["consent"]["status"] == "subscribed"  # type: ignore[index]
    assert (await consent(gateway, holder))["consent"]["status"] == "unsubscribed"  # type: ignore[index]


async def test_unsubscribe_without_confirmation_is_422(gateway: Gateway) -> None:
    contact_id = await new_contact(gateway)
    token = signer(gateway).sign_unsubscribe("<m@nurture.example>", contact_id)

    response = await gateway.client.post(f"/u/{token}", content="anything=else", headers={"Content-Type": "application/x-www-form-urlencoded"})

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body"
    assert (await consent(gateway, contact_id))["consent"]["status"] == "subscribed"  # type: ignore[index]


async def test_unsubscribe_waits_out_contacts_outage(gateway: Gateway) -> None:
    contact_id = await new_contact(gateway)
    token = signer(gateway).sign_unsubscribe("<m@nurture.example>", contact_id)
    working = gateway.app.state.clients["contacts"]
    gateway.app.state.clients["contacts"] = ServiceClient(
        "contacts", f"http://127.0.0.1:{free_port()}", internal_token=gateway.app.state.settings.internal_token
    )
    try:
        response = await gateway.client.post(f"/u/{token}", content="List-Unsubscribe=One-Click")
    finally:
        await gateway.app.state.clients["contacts"].aclose()
        gateway.app.state.clients["contacts"] = working
    before = (await consent(gateway, contact_id))["consent"]["status"]  # type: ignore[index]

    async with gateway.app.state.db.session() as session:
        [row] = (await session.exec(select(TrackingHit).where(TrackingHit.contact_id == contact_id))).all()
    # The failed attempt scheduled a retry, which the sweep runs once it is due.
    clock.advance(timedelta(seconds=RETRY_AFTER_FIRST_FAILURE_S + 1))
    await gateway.deliverer().sweep()
    async with gateway.app.state.db.session() as session:
        retried = await session.get(TrackingHit, row.id)

    assert response.status_code == 200
    assert before == "subscribed"
    assert row.state == "pending"
    assert row.attempts == 1
    assert retried is not None
    assert retried.state == "delivered"
    assert (await consent(gateway, contact_id))["consent"]["status"] == "unsubscribed"  # type: ignore[index]


async def test_tracking_answers_while_database_down(gateway: Gateway, tmp_path: object) -> None:
    contact_id = await new_contact(gateway)
    working = gateway.app.state.db
    gateway.app.state.db = Database(f"sqlite+aiosqlite:///{tmp_path}/missing/folder/gateway.db")
    try:
        pixel = await gateway.client.get(f"/t/o/{signer(gateway).sign_open('<m@nurture.example>', contact_id)}")
        click = await gateway.client.get(f"/t/c/{signer(gateway).sign_click('<m@nurture.example>', contact_id, 'https://example.com/x')}")
    finally:
        await gateway.app.state.db.dispose()
        gateway.app.state.db = working

    assert pixel.status_code == 200
    assert click.status_code == 302
    assert click.headers["location"] == "https://example.com/x"


def test_unsubscribe_page_escapes_values() -> None:
    page = unsubscribe_page('/u/"><script>alert(1)</script>', done=False)

    html = bytes(page.body).decode()
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert page.headers["content-security-policy"].startswith("default-src 'none'")


async def test_tracking_needs_no_api_key(gateway: Gateway) -> None:
    contact_id = await new_contact(gateway)
    anonymous = httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway.app), base_url="http://gateway")

    async with anonymous:
        response = await anonymous.get(f"/t/o/{signer(gateway).sign_open('<m@nurture.example>', contact_id)}")

    assert response.status_code == 200

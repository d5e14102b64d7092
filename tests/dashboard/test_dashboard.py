"""The dashboard in headless Chromium against the running platform: figures, escaping, contact search."""

import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
from playwright.async_api import Browser, ConsoleMessage, Page

from tests.reports.dataset import EXPECTED_CURRENT, EXPECTED_REACHED, MOVES, Funnel, build_funnel
from tests.support.apps import RunningPlatform
from tests.support.waiting import eventually

MARKUP_NAME = "<img src=x onerror=alert(1)>"


@dataclass
class PageWatch:
    """What the page did that a person would not see: console errors, page errors, dialogs, requests."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


def watch(page: Page) -> PageWatch:
    seen = PageWatch()

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            seen.console_errors.append(message.text)

    async def on_dialog(dialog: Any) -> None:
        seen.dialogs.append(dialog.message)
        await dialog.dismiss()

    page.on("console", on_console)
    page.on("pageerror", lambda error: seen.page_errors.append(str(error)))
    page.on("dialog", on_dialog)
    page.on("request", lambda request: seen.requests.append(request.url))
    return seen


def date_window(funnel: Funnel) -> tuple[str, str, dict[str, str]]:
    """The date inputs that hold the data set, and the API window they stand for."""
    since = funnel.base.date().isoformat()
    until = (funnel.base + timedelta(days=30)).date().isoformat()
    return since, until, {"since": f"{since}T00:00:00Z", "until": f"{until}T00:00:00Z"}


async def figures(page: Page) -> dict[str, tuple[str, str]]:
    """Return every shown figure as (raw value, displayed text), by figure name."""
    items = await page.eval_on_selector_all(
        "[data-figure]", "nodes => nodes.map(node => [node.dataset.figure, node.dataset.value, node.textContent])"
    )
    return {name: (value, text) for name, value, text in items}


async def loaded(page: Page, previous: str | None) -> str:
    """Wait until the page has finished loading its reports after `previous`; return the new mark."""
    await page.wait_for_function("previous => document.body.dataset.loaded && document.body.dataset.loaded !== previous", arg=previous)
    return await page.get_attribute("body", "data-loaded") or ""


async def scores_agree(page: Page, client: httpx.AsyncClient) -> bool:
    """Show the score distribution again and compare its count with the API's.

    The platform's scoring worker may still be scoring new contacts, so the two reads can differ
    for a moment.
    """
    await page.click("#score-form button[type=submit]")
    await page.wait_for_load_state("networkidle")
    shown = await page.get_attribute('[data-figure="scores.count"]', "data-value")
    report = await api(client, "/v1/reports/score-distribution", model="default")
    return shown == str(report["count"])


async def open_dashboard(browser: Browser, platform: RunningPlatform) -> tuple[Page, PageWatch]:
    page = await browser.new_page()
    seen = watch(page)
    await page.goto(f"{platform.gateway_url}/dashboard")
    await page.fill("#api-key", platform.api_key)
    await page.click("#key-form button[type=submit]")
    return page, seen


async def api(client: httpx.AsyncClient, path: str, **params: str) -> Any:
    response = await client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def raw(value: Any) -> str:
    """Return `value` as JavaScript's String() prints it, which the page stores in data-value."""
    if value is None:
        return "null"
    if isinstance(value, float) and value.is_integer():
        # JavaScript prints 2.0 as "2".
        return str(int(value))
    return str(value)


async def test_dashboard_shows_report_figures(browser: Browser, platform: RunningPlatform) -> None:
    async with platform.client() as client:
        funnel = await build_funnel(client, prefix="/v1")
        page, seen = await open_dashboard(browser, platform)
        mark = await loaded(page, None)

        since, until, window = date_window(funnel)
        await page.fill("#since", since)
        await page.fill("#until", until)
        await page.click("#window-form button[type=submit]")
        await loaded(page, mark)
        shown = await figures(page)
        funnel_report = await api(client, "/v1/reports/funnel", **window)
        times = await api(client, "/v1/reports/stage-times", **window)
        impact = await api(client, "/v1/reports/nurture-impact", **window)
        await eventually(lambda: scores_agree(page, client), timeout_s=20)

    for stage in funnel_report["stages"]:
        assert shown[f"funnel.current.{stage['stage']}"] == (str(stage["current"]), str(stage["current"]))
        assert shown[f"funnel.reached.{stage['stage']}"] == (str(stage["reached"]), str(stage["reached"]))
    assert {item["stage"]: item["reached"] for item in funnel_report["stages"]} == EXPECTED_REACHED
    assert {item["stage"]: item["current"] for item in funnel_report["stages"]} == EXPECTED_CURRENT
    for item in funnel_report["conversions"]:
        value, text = shown[f"funnel.conversion.{item['from']}.{item['to']}"]
        assert value == raw(item["rate"])
        assert text == f"{item['rate'] * 100:.1f}% to {item['to']}"
    assert shown["funnel.mql_to_sql_rate"] == ("0.5", "50.0%")
    for item in times["stages"]:
        assert shown[f"stage_times.median.{item['stage']}"][0] == raw(item["median_seconds"])
        assert shown[f"stage_times.p90.{item['stage']}"][0] == raw(item["p90_seconds"])
        assert shown[f"stage_times.completed.{item['stage']}"][0] == str(item["completed_stays"])
        assert shown[f"stage_times.open.{item['stage']}"][0] == str(item["open_stays"])
    assert shown["stage_times.median.lead"][1] == "20.0 h"
    for group in ("nurtured", "not_nurtured"):
        for name in ("leads", "customers", "conversion_rate"):
            assert shown[f"nurture.{group}.{name}"][0] == raw(impact[group][name])
    assert shown["nurture.nurtured.conversion_rate"][1] == "33.3%"
    assert seen.console_errors == []
    assert seen.page_errors == []


async def send_sequence_emails(client: httpx.AsyncClient, count: int) -> str:
    """Create and activate a one-email sequence, enrol `count` new contacts, and wait for the sends."""
    html = '<p>Hello <a href="https://example.com/guide">the guide</a></p>'
    template = await client.post("/v1/templates", json={"name": f"dash-{uuid.uuid4().hex[:6]}", "subject": "Hello", "html": html})
    assert template.status_code == 201, template.text
    steps = [{"id": "hello", "email": {"template_id": template.json()["id"]}}]
    created = await client.post("/v1/sequences", json={"name": f"Dashboard {uuid.uuid4().hex[:6]}", "trigger": {"type": "manual"}, "steps": steps})
    assert created.status_code == 201, created.text
    sequence_id: str = created.json()["id"]
    assert (await client.post(f"/v1/sequences/{sequence_id}/activate")).status_code == 200

    for _ in range(count):
        contact = await client.post("/v1/contacts", json={"email": f"dash-{uuid.uuid4().hex[:10]}@example.com"})
        assert contact.status_code == 201, contact.text

        async def enrolled(contact_id: str = contact.json()["id"]) -> bool:
            # The sequencer learns of a new contact from an event, so the first tries may get 404.
            response = await client.post(f"/v1/sequences/{sequence_id}/enrollments", json={"contact_id": contact_id})
            return response.status_code == 201

        await eventually(enrolled, timeout_s=30)

    async def sent() -> bool:
        report = await api(client, "/v1/reports/sequence-performance", sequence_id=sequence_id)
        return report["sequences"][0]["totals"]["sent"] == count

    await eventually(sent, timeout_s=60)
    return sequence_id


async def test_sequence_performance_matches_api(browser: Browser, platform: RunningPlatform) -> None:
    async with platform.client() as client:
        sequence_id = await send_sequence_emails(client, 2)
        page, seen = await open_dashboard(browser, platform)
        await loaded(page, None)
        report = await api(client, "/v1/reports/sequence-performance")
    shown = await figures(page)

    [sequence] = [item for item in report["sequences"] if item["sequence_id"] == sequence_id]
    prefix = f"performance.{sequence_id}."
    assert shown[prefix + "totals.sent"][0] == "2"
    for name in ("sent", "delivered", "unique_opens", "unique_clicks"):
        assert shown[prefix + f"totals.{name}"][0] == str(sequence["totals"][name])
        for day in sequence["days"]:
            assert shown[prefix + f"{day['day']}.{name}"][0] == str(day[name])
    block = page.locator(f'[data-sequence="{sequence_id}"]')
    assert await block.locator("polyline").count() == 4
    assert seen.console_errors == []


async def test_markup_in_name_is_shown_as_text(browser: Browser, platform: RunningPlatform) -> None:
    async with platform.client() as client:
        funnel = await build_funnel(client, prefix="/v1", first_names={"ann": MARKUP_NAME})
        ann = funnel.ids["ann"]
        event = {"id": uuid.uuid4().hex, "contact_id": ann, "type": "page_view", "properties": {"url": "https://example.com/pricing"}}
        assert (await client.post("/v1/events", json=event)).status_code == 202

        async def scored() -> bool:
            models = (await api(client, f"/v1/contacts/{ann}/score"))["models"]
            return any(row["rule"] == "pricing-visit" for model in models.values() for row in model["ledger"])

        await eventually(scored, timeout_s=30)

    page, seen = await open_dashboard(browser, platform)
    await loaded(page, None)
    await page.fill("#contact-email", funnel.names["ann"])
    await page.click("#contact-form button[type=submit]")
    button = page.locator("#contact-results button.open-contact")
    await button.wait_for()

    assert MARKUP_NAME in (await button.text_content() or "")
    assert await page.locator("#contact-results img").count() == 0

    await button.click()
    await page.locator("#contact-details").wait_for(state="visible")

    assert await page.text_content("#contact-name") == f"{MARKUP_NAME} Report"
    assert await page.locator("img").count() == 0
    history = await page.locator("#contact-stage-history tr").all_text_contents()
    assert len(history) == 1 + len(MOVES["ann"])
    assert "customer" in history[-1]
    assert await page.locator("#contact-ledger td", has_text="pricing-visit").count() >= 1
    timeline = await page.locator("#contact-timeline tr").all_text_contents()
    assert any("page_view" in line for line in timeline)
    assert any("email_sent" in line for line in timeline)
    assert seen.dialogs == []
    assert seen.console_errors == []
    assert seen.page_errors == []


async def test_contact_parts_show_without_scoring_scope(browser: Browser, platform: RunningPlatform) -> None:
    async with platform.client() as client:
        funnel = await build_funnel(client, prefix="/v1")
    key = await platform.new_key("dashboard-without-scoring", ["reports:read", "contacts:read"])

    page = await browser.new_page()
    seen = watch(page)
    await page.goto(f"{platform.gateway_url}/dashboard")
    await page.fill("#api-key", key)
    await page.click("#key-form button[type=submit]")
    await page.fill("#contact-email", funnel.names["ann"])
    await page.click("#contact-form button[type=submit]")
    await page.locator("#contact-results button.open-contact").click()
    await page.locator("#contact-details").wait_for(state="visible")

    history = await page.locator("#contact-stage-history tr").all_text_contents()
    ledger = await page.text_content("#contact-ledger") or ""
    assert len(history) == 1 + len(MOVES["ann"])
    assert "403" in ledger
    assert "scope" in ledger
    assert await page.locator("#contact-timeline tr").count() >= 1
    assert seen.page_errors == []


async def test_page_makes_no_outside_requests(browser: Browser, platform: RunningPlatform) -> None:
    page, seen = await open_dashboard(browser, platform)
    await loaded(page, None)

    assert seen.requests
    assert [url for url in seen.requests if not url.startswith(platform.gateway_url + "/")] == []


async def test_inline_script_is_blocked(browser: Browser, platform: RunningPlatform) -> None:
    page, seen = await open_dashboard(browser, platform)
    await loaded(page, None)

    ran = await page.evaluate(
        """() => {
            const script = document.createElement("script");
            script.textContent = "window.inlineRan = true";
            document.body.append(script);
            return Boolean(window.inlineRan);
        }"""
    )

    assert ran is False
    assert any("Content Security Policy" in message for message in seen.console_errors)


async def test_key_stays_in_session_storage(browser: Browser, platform: RunningPlatform) -> None:
    page, _ = await open_dashboard(browser, platform)
    await loaded(page, None)

    stored = await page.evaluate("() => [window.sessionStorage.getItem('nurture.apiKey'), window.localStorage.length]")
    await page.click("#forget-key")

    assert stored == [platform.api_key, 0]
    assert await page.evaluate("() => window.sessionStorage.getItem('nurture.apiKey')") is None
    assert await page.locator("#reports").is_hidden()

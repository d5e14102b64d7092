"""A reduced `nurture demo` on the session's platform: every email reaches the sink, the summary matches the reports."""

import io
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest
from rich.console import Console

from services.cli.demo.platform import Target
from services.cli.demo.playbook import OUTCOME_ATTRIBUTE
from services.cli.demo.runner import Demo, DemoOptions, DemoResult
from services.kit import clock
from services.kit.smtp_sink import read_sink
from tests.support.apps import RunningPlatform

CONTACTS = 200
WEEKS = 1

# The demo runs once, in the first test's setup, and takes minutes rather than seconds: most of it
# is the sequencer sending some 400 emails.
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
async def demo_run(platform: RunningPlatform) -> tuple[DemoResult, str, str]:
    """Run the demo once for the module; return its result, its printed output and its API key."""
    key = await platform.new_key("demo", ["*"], rate_limit=0)
    own = platform.environment
    target = Target(platform.gateway_url, key, platform.mail_dir, own.redis_url, own.namespace)
    output = io.StringIO()
    console = Console(file=output, width=160, color_system=None)
    # A model of its own, so the reference rule set of "default" stays as other tests expect it.
    options = DemoOptions(contacts=CONTACTS, weeks=WEEKS, model=f"demo-{uuid.uuid4().hex[:8]}")

    result = await Demo(target, options, console).run()

    # Reports read later must see the platform as it was when the demo read them.
    clock.freeze(result.ended_at)
    return result, output.getvalue(), key


@pytest.fixture
async def api(platform: RunningPlatform, demo_run: tuple[DemoResult, str, str]) -> Any:
    clock.freeze(demo_run[0].ended_at)
    async with httpx.AsyncClient(
        base_url=platform.gateway_url, headers={"Authorization": f"Bearer {demo_run[2]}"}, timeout=60
    ) as client:
        yield client


def _printed_rows(output: str) -> dict[str, str]:
    """Return the cells of the printed tables as {first cell: remaining cells joined by |}."""
    rows: dict[str, str] = {}
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.replace("┃", "│").split("│") if cell.strip()]
        if len(cells) >= 2:
            rows[cells[0]] = " | ".join(cells[1:])
    return rows


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


async def test_every_sent_email_is_in_the_sink(
    platform: RunningPlatform, demo_run: tuple[DemoResult, str, str], api: httpx.AsyncClient
) -> None:
    result = demo_run[0]
    report = (await api.get(f"/v1/sequences/{result.sequence_id}/report")).json()
    enrolments = set()
    cursor = None
    while True:
        page = (await api.get(f"/v1/sequences/{result.sequence_id}/enrollments", params={"limit": 500, **({"cursor": cursor} if cursor else {})})).json()
        enrolments.update(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            break

    messages = read_sink(platform.mail_dir)
    in_sink = Counter(message["X-Nurture-Step"] for message in messages if message["X-Nurture-Enrolment"] in enrolments)

    sent = {step["step_id"]: step["sent"] for step in report["steps"] if step["sent"]}
    assert sent, "the sequence sent no email"
    assert dict(in_sink) == sent
    assert result.emails_in_sink == sum(sent.values())


async def test_printed_summary_equals_the_reports(demo_run: tuple[DemoResult, str, str], api: httpx.AsyncClient) -> None:
    result, output, _ = demo_run
    cohort = {"since": result.cohort.since.isoformat(), "until": result.cohort.until.isoformat()}
    funnel = (await api.get("/v1/reports/funnel", params=cohort)).json()
    stage_times = (await api.get("/v1/reports/stage-times", params={"since": cohort["since"]})).json()
    impact = (await api.get("/v1/reports/nurture-impact", params=cohort)).json()
    steps = (await api.get(f"/v1/sequences/{result.sequence_id}/report")).json()["steps"]
    outcome = {"outcome": {"attribute": OUTCOME_ATTRIBUTE, "equals": True}}
    calibration = (await api.post(f"/v1/scoring/models/{result.model}/calibration", json=outcome)).json()
    reached = {item["stage"]: item["reached"] for item in funnel["stages"]}
    delivered = sum(step["delivered"] for step in steps)
    rows = _printed_rows(output)

    assert rows["contacts"] == f"{funnel['contacts']:,}"
    assert rows["MQLs"] == f"{reached['mql']:,}"
    assert rows["SQLs"] == f"{reached['sql']:,}"
    assert rows["customers"] == f"{reached['customer']:,}"
    assert rows["emails sent"] == f"{sum(step['sent'] for step in steps):,}"
    assert rows["open rate (unique opens / delivered)"] == _percent(sum(step["unique_opens"] for step in steps) / delivered)
    assert rows["click-through rate (unique clicks / delivered)"] == _percent(sum(step["unique_clicks"] for step in steps) / delivered)
    assert rows["MQL → SQL rate"] == _percent(funnel["mql_to_sql_rate"])
    assert rows["lead → customer, nurtured"] == _percent(impact["nurtured"]["conversion_rate"])
    assert rows["lead → customer, held out of nurturing"] == _percent(impact["not_nurtured"]["conversion_rate"])
    assert rows["ROC AUC of the score for the real outcome"] == f"{calibration['auc']:.3f}"
    for item in stage_times["stages"]:
        median = item["median_seconds"]
        expected = "n/a" if median is None else f"{median / 86_400:.1f} days"
        assert rows[item["stage"]] == f"{reached[item['stage']]:,} | {expected}"


async def test_demo_nurtures_the_imported_leads(demo_run: tuple[DemoResult, str, str]) -> None:
    summary = demo_run[0].summary

    assert summary.contacts == CONTACTS
    assert summary.history_events > CONTACTS  # at least one call per lead, more for many
    assert summary.reached["lead"] == CONTACTS
    assert summary.reached["mql"] > 0
    assert 0 < summary.reached["sql"] <= summary.reached["mql"]
    assert summary.unique_opens > 0
    assert summary.auc is not None and summary.auc > 0.5

"""Across the real processes: a pricing-page visit posted to the gateway ends as an email in the SMTP sink."""

import uuid

from services.kit.smtp_sink import read_sink
from tests.support.apps import RunningPlatform
from tests.support.waiting import eventually


async def test_pricing_visit_sends_email_through_platform(platform: RunningPlatform) -> None:
    marker = uuid.uuid4().hex[:8]
    address = f"visitor-{marker}@example.com"
    async with platform.client() as client:
        template = await client.post(
            "/v1/templates",
            json={"name": f"pricing-{marker}", "subject": f"Questions about pricing? {marker}", "html": "<p>Reply any time.</p>"},
        )
        assert template.status_code == 201, template.text
        trigger = {"type": "event", "event_type": "page_view", "conditions": [{"property": "url", "op": "contains", "value": f"/pricing-{marker}"}]}
        body = {"name": f"Pricing {marker}", "trigger": trigger, "steps": [{"email": {"template_id": template.json()["id"]}}]}
        sequence = await client.post("/v1/sequences", json=body)
        assert sequence.status_code == 201, sequence.text
        assert (await client.post(f"/v1/sequences/{sequence.json()['id']}/activate")).status_code == 200

        event = {"email": address, "type": "page_view", "properties": {"url": f"https://acme.test/pricing-{marker}"}}
        assert (await client.post("/v1/events", json=event)).status_code == 202

        async def delivered() -> list[object]:
            return [message for message in read_sink(platform.mail_dir) if marker in str(message["Subject"])]

        [message] = await eventually(delivered, timeout_s=120)
        assert message["To"] == address

        # The outcome is written after the server's reply, so the report may count the email a moment later.
        async def counted() -> list[int]:
            report = (await client.get(f"/v1/sequences/{sequence.json()['id']}/report")).json()
            return [step["sent"] for step in report["steps"] if step["sent"]]

        assert await eventually(counted, timeout_s=30) == [1]

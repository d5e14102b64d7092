"""Erasure across the platform: afterwards no table of any service names the person.

The real processes first score, enrol and email the contact, so every service stores something
about it. After `DELETE /v1/contacts/{id}` each service's database is read row by row.
Only the tombstones may remain, and they hold neither the address nor the id.
"""

import uuid
from typing import Any

import httpx
from sqlalchemy import MetaData, select
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support.apps import RunningPlatform
from tests.support.waiting import eventually

TOMBSTONES = {("contacts", "contact_tombstone"), ("scoring", "erased_contact"), ("sequencer", "erased_contact")}


async def _ok(response: httpx.Response, *statuses: int) -> Any:
    assert response.status_code in statuses, response.text
    return response.json() if response.content else None


async def _emailed_contact(client: httpx.AsyncClient, email: str) -> tuple[str, str]:
    """Create a contact with a pricing visit, a score and one sent email. Return its id and the sequence id."""
    contact = await _ok(await client.post("/v1/contacts", json={"email": email, "first_name": "Erin", "last_name": "Gone"}), 201)
    event = {"contact_id": contact["id"], "type": "page_view", "properties": {"url": "https://example.com/pricing"}}
    await _ok(await client.post("/v1/events", json=event), 202)

    template = await _ok(await client.post("/v1/templates", json={
        "name": f"erasure-{uuid.uuid4().hex[:6]}", "subject": "Hello {{ contact.first_name | default('there') }}",
        "html": "<p>Hi {{ contact.first_name | default('there') }}</p>",
    }), 201)
    sequence = await _ok(await client.post("/v1/sequences", json={
        "name": "Erasure", "trigger": {"type": "manual"},
        "steps": [{"id": "hello", "email": {"template_id": template["id"]}}],
    }), 201)
    await _ok(await client.post(f"/v1/sequences/{sequence['id']}/activate"), 200)
    await _ok(await client.post(f"/v1/sequences/{sequence['id']}/enrollments", json={"contact_id": contact["id"]}), 201)

    async def scored_and_sent() -> bool:
        score = await _ok(await client.get(f"/v1/contacts/{contact['id']}/score"), 200)
        report = await _ok(await client.get(f"/v1/sequences/{sequence['id']}/report"), 200)
        return bool(score["models"]) and report["steps"][0]["sent"] == 1

    await eventually(scored_and_sent, timeout_s=60)
    return contact["id"], sequence["id"]


async def _rows_naming(database_url: str, needles: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Return, by table, every row of the database in which any of `needles` appears."""
    engine = create_async_engine(database_url)
    found: dict[str, list[dict[str, Any]]] = {}
    try:
        async with engine.connect() as connection:
            metadata = MetaData()
            await connection.run_sync(metadata.reflect)
            for table in metadata.sorted_tables:
                for row in (await connection.execute(select(table))).mappings():
                    text = " ".join(str(value) for value in row.values()).lower()
                    if any(needle in text for needle in needles):
                        found.setdefault(table.name, []).append(dict(row))
    finally:
        await engine.dispose()
    return found


async def test_erased_contact_is_gone_from_every_service(platform: RunningPlatform) -> None:
    databases = platform.environment.database_urls
    email = f"erin-{uuid.uuid4().hex[:8]}@example.com"
    async with platform.client() as client:
        contact_id, sequence_id = await _emailed_contact(client, email)
        before = await _rows_naming(databases["scoring"], [contact_id])
        assert before, "scoring holds nothing about the contact, so the check below would prove nothing"

        assert (await client.delete(f"/v1/contacts/{contact_id}")).status_code == 204

        async def erased_everywhere() -> bool:
            left: dict[str, Any] = {}
            for service, url in databases.items():
                for table, rows in (await _rows_naming(url, [contact_id, email.lower()])).items():
                    if (service, table) not in TOMBSTONES:
                        left[f"{service}.{table}"] = rows
            assert left == {}
            return True

        await eventually(erased_everywhere, timeout_s=60)

        assert (await client.get(f"/v1/contacts/{contact_id}")).status_code == 404
        report = await _ok(await client.get(f"/v1/sequences/{sequence_id}/report"), 200)
        assert report["steps"][0]["sent"] == 1

"""Concurrent event batches that create the same new contacts: every event stored, one contact each."""

import asyncio
import uuid

from tests.contacts.support import Apps


async def test_batches_over_same_new_addresses(contacts_app: Apps) -> None:
    _, client = contacts_app
    for _round in range(3):
        prefix = uuid.uuid4().hex[:8]
        addresses = [f"race-{prefix}-{number}@example.com" for number in range(60)]
        batches = [
            {"events": [{"id": f"{prefix}-{writer}-{number}", "email": address, "type": "page_view"} for number, address in enumerate(addresses)]}
            for writer in range(4)
        ]

        responses = await asyncio.gather(*(client.post("/events/batch", json=batch) for batch in batches))
        contacts = {
            item["contact_id"] for response in responses for item in response.json()["items"] if item["status"] == "stored"
        }

        assert [response.status_code for response in responses] == [202] * 4
        assert all(item["status"] == "stored" for response in responses for item in response.json()["items"])
        assert len(contacts) == len(addresses)

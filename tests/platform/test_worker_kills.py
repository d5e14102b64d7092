"""The contacts and gateway workers killed with SIGKILL mid-batch: after the restart, each item is applied once.

The scoring and sequencer workers have their own kill tests beside their services. These two run
on the shared platform of real processes, whose supervisor restarts a killed child.
"""

import json
import signal
import uuid
from typing import Any

import httpx
import pytest

from services.gateway.settings import GatewaySettings
from services.kit.tokens import TokenSigner
from tests.support.apps import RunningPlatform
from tests.support.waiting import eventually

IMPORT_ROWS = 1500
OPENS = 300


async def _kill_and_wait_for_restart(platform: RunningPlatform, name: str) -> None:
    old_pid = platform.platform.signal(name, signal.SIGKILL)

    async def restarted() -> bool:
        process = platform.platform.child(name).process
        return process is not None and process.pid != old_pid and process.poll() is None

    await eventually(restarted, timeout_s=60)


async def _import_report(client: httpx.AsyncClient, import_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/imports/{import_id}")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


@pytest.mark.timeout(900)
async def test_killed_contacts_worker_finishes_import_once(platform: RunningPlatform) -> None:
    tag = uuid.uuid4().hex[:8]
    content = "email,first_name\n" + "".join(f"kill-{tag}-{row}@example.com,R{row}\n" for row in range(IMPORT_ROWS))
    async with platform.client() as client:
        accepted = await client.post(
            "/v1/imports",
            files={"file": ("contacts.csv", content.encode(), "text/csv")},
            data={"mapping": json.dumps({"email": "email", "first_name": "first_name"})},
        )
        assert accepted.status_code == 202, accepted.text
        import_id = accepted.json()["id"]

        async def started() -> dict[str, Any] | None:
            report = await _import_report(client, import_id)
            return report if report["rows"] > 0 else None

        at_kill = await eventually(started, timeout_s=120, interval_s=0.02)
        await _kill_and_wait_for_restart(platform, "contacts-worker")

        async def done() -> dict[str, Any] | None:
            report = await _import_report(client, import_id)
            return report if report["status"] == "done" else None

        # arq keeps a killed job's in-progress mark for 310 s. The import sweep releases it once the
        # job's row has not moved for a minute, and the restarted worker resumes after the last chunk.
        report = await eventually(done, timeout_s=300)
        first = await client.get("/v1/contacts", params={"email": f"kill-{tag}-0@example.com"})
        last = await client.get("/v1/contacts", params={"email": f"kill-{tag}-{IMPORT_ROWS - 1}@example.com"})

    assert at_kill["rows"] < IMPORT_ROWS, "the import finished before the kill, so nothing was cut short"
    assert report["rows"] == IMPORT_ROWS
    assert report["created"] == IMPORT_ROWS
    assert report["updated"] == 0
    assert report["rejected"] == 0
    assert len(first.json()["items"]) == 1
    assert len(last.json()["items"]) == 1


@pytest.mark.timeout(900)
async def test_killed_gateway_worker_delivers_each_open_once(platform: RunningPlatform) -> None:
    signer = TokenSigner(GatewaySettings().tracking_secret_list())
    async with platform.client() as client:
        created = await client.post("/v1/contacts", json={"email": f"opens-{uuid.uuid4().hex[:8]}@example.com"})
        assert created.status_code == 201, created.text
        contact_id = created.json()["id"]

        async def record_opens(numbers: range) -> None:
            async with httpx.AsyncClient(base_url=platform.gateway_url, timeout=30.0) as anonymous:
                for number in numbers:
                    token = signer.sign_open(f"<kill-{number}-{uuid.uuid4().hex}@nurture.example>", contact_id)
                    pixel = await anonymous.get(f"/t/o/{token}")
                    assert pixel.status_code == 200

        async def timeline_ids() -> list[str]:
            response = await client.get(f"/v1/contacts/{contact_id}/timeline", params={"limit": 500})
            assert response.status_code == 200, response.text
            return [event["id"] for event in response.json()["items"]]

        # The worker is killed once it delivers the first half's opens, and the second half is
        # recorded only after the kill. The worker delivers opens in batches, so waiting for a
        # partial delivery of all of them could find every one delivered before the kill.
        await record_opens(range(OPENS // 2))
        await eventually(timeline_ids, timeout_s=120, interval_s=0.02)
        await _kill_and_wait_for_restart(platform, "gateway-worker")
        await record_opens(range(OPENS // 2, OPENS))

        async def all_delivered() -> list[str] | None:
            ids = await timeline_ids()
            return ids if len(ids) >= OPENS else None

        delivered = await eventually(all_delivered, timeout_s=600)

    assert len(delivered) == OPENS
    assert len(set(delivered)) == OPENS

"""CSV imports through the API and the worker's job: row-level outcomes, consent, idempotency, progress."""

import io
import uuid
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from sqlmodel import select

from services.contacts.imports.models import ImportJob
from services.contacts.imports.service import upload_path
from services.contacts.imports.tasks import _commit_chunk, restore_report, run_import, sweep_imports
from services.kit.queue import ARQ_JOB_KEY_PREFIX
from tests.contacts.support import Apps, create_contact, run_import_now, unique_email, upload, worker_context
from tests.support.workers import drain_queue

FIXTURES = Path(__file__).parent / "fixtures"


async def _define(client: httpx.AsyncClient, name: str, type_: str) -> None:
    response = await client.put(f"/attributes/{name}", json={"type": type_, "label": name})
    assert response.status_code in (200, 201), response.text


async def _report(client: httpx.AsyncClient, import_id: str) -> dict[str, Any]:
    response = await client.get(f"/imports/{import_id}")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def _import(app: FastAPI, client: httpx.AsyncClient, content: bytes, mapping: dict[str, str], **form: str) -> dict[str, Any]:
    accepted = await upload(client, content, mapping, **form)
    assert accepted.status_code == 202, accepted.text
    await run_import_now(app, accepted.json()["id"])
    return await _report(client, accepted.json()["id"])


def _case04_file() -> bytes:
    """The case 04 file with its addresses made unique to this test, keeping the exact shape (no final newline)."""
    text = (FIXTURES / "case04_bad_rows.csv").read_bytes().decode()
    tag = uuid.uuid4().hex[:8]
    return text.replace("@example.com", f"-{tag}@example.com").encode()


async def test_case_04_row_outcomes(contacts_app: Apps) -> None:
    app, client = contacts_app
    await _define(client, "birthday", "date")
    content = _case04_file()
    assert not content.endswith(b"\n")

    report = await _import(app, client, content, {"email": "email", "first_name": "first_name", "birthday": "birthday"})

    assert report["status"] == "done"
    assert report["created"] == 3
    assert report["updated"] == 0
    assert [(row["line"], row["reason"]) for row in report["failed"]] == [(3, "invalid email"), (5, "invalid date: birthday")]
    assert (report["duplicates"], report["duplicate_lines"]) == (1, [7])
    assert report["created"] + report["updated"] + report["rejected"] + report["duplicates"] == 6
    r5 = content.decode().splitlines()[-1].split(",")[0]
    listed = (await client.get("/contacts", params={"email": r5})).json()["items"]
    assert [(item["first_name"], item["attributes"]) for item in listed] == [("Rae2", {"birthday": "1993-07-08"})]
    r4 = content.decode().splitlines()[4].split(",")[0]
    assert (await client.get("/contacts", params={"email": r4})).json()["items"] == []


async def test_case_06_reimport_never_resubscribes(contacts_app: Apps) -> None:
    app, client = contacts_app
    email = unique_email("u")
    contact = await create_contact(client, email=email)
    unsubscribe = {"contact_id": contact["id"], "type": "unsubscribed", "occurred_at": "2024-05-01T10:00:00Z"}
    assert (await client.post("/events", json=unsubscribe)).status_code == 202
    content = (FIXTURES / "case06_reimport.csv").read_bytes().replace(b"u@example.com", email.encode())

    report = await _import(app, client, content, {"email": "email", "first_name": "first_name", "status": "consent"}, mode="overwrite")

    read = (await client.get(f"/contacts/{contact['id']}")).json()
    assert read["first_name"] == "Una"
    assert (read["consent"]["status"], read["consent"]["source"]) == ("unsubscribed", "unsubscribe_link")
    assert read["consent"]["changed_at"] == "2024-05-01T10:00:00Z"
    assert (report["updated"], report["consent_changes_ignored"]) == (1, 1)
    assert (await client.get(f"/contacts/{contact['id']}/sendability")).json()["sendable"] is False


async def test_new_contact_takes_consent_from_file(contacts_app: Apps) -> None:
    app, client = contacts_app
    email = unique_email("new")
    content = f"email,status\n{email},unsubscribed\n".encode()

    report = await _import(app, client, content, {"email": "email", "status": "consent"})

    [contact] = (await client.get("/contacts", params={"email": email})).json()["items"]
    assert (report["created"], report["consent_changes_ignored"]) == (1, 0)
    assert (contact["consent"]["status"], contact["consent"]["source"]) == ("unsubscribed", "import_initial")


async def test_ten_thousand_rows_with_three_bad_ones(contacts_app: Apps) -> None:
    app, client = contacts_app
    tag = uuid.uuid4().hex[:8]
    bad_lines = {1502: "not-an-email", 5003: "also@bad@example.com", 9998: ""}
    lines = ["email,first_name,timezone"]
    for line in range(2, 10_002):
        email = bad_lines.get(line, f"bulk{line}-{tag}@example.com")
        lines.append(f"{email},Name {line},Europe/Berlin")
    content = "\n".join(lines).encode()

    report = await _import(app, client, content, {"email": "email", "first_name": "first_name", "timezone": "timezone"})

    assert report["created"] == 9997
    assert [row["line"] for row in report["failed"]] == sorted(bad_lines)
    assert report["rows"] == 10_000
    assert report["progress"] == 1.0
    last = (await client.get("/contacts", params={"email": f"bulk10001-{tag}@example.com"})).json()["items"]
    assert last[0]["timezone"] == "Europe/Berlin"


async def test_same_file_again_changes_nothing(contacts_app: Apps) -> None:
    app, client = contacts_app
    email = unique_email("again")
    content = f"email,first_name\n{email},First\n".encode()
    mapping = {"email": "email", "first_name": "first_name"}
    first = await upload(client, content, mapping)
    await run_import_now(app, first.json()["id"])
    [contact] = (await client.get("/contacts", params={"email": email})).json()["items"]
    await client.patch(f"/contacts/{contact['id']}", json={"first_name": "Changed since"})

    second = await upload(client, content, mapping)

    assert second.status_code == 202
    assert second.json() == {"id": first.json()["id"], "status": "done", "reused": True}
    assert (await client.get(f"/contacts/{contact['id']}")).json()["first_name"] == "Changed since"
    async with app.state.db.session() as session:
        job = await session.get(ImportJob, first.json()["id"])
    assert job is not None and job.status == "done"


async def test_other_mapping_is_another_import(contacts_app: Apps) -> None:
    _, client = contacts_app
    content = f"email,first_name\n{unique_email()},A\n".encode()

    first = await upload(client, content, {"email": "email"})
    second = await upload(client, content, {"email": "email", "first_name": "first_name"})

    assert first.json()["id"] != second.json()["id"]


async def test_upload_is_stored_on_disk_until_done(contacts_app: Apps) -> None:
    app, client = contacts_app
    content = f"email\n{unique_email()}\n".encode()

    accepted = await upload(client, content, {"email": "email"})
    path = upload_path(app.state.settings, accepted.json()["id"])
    stored = path.read_bytes()
    await run_import_now(app, accepted.json()["id"])

    assert stored == content
    assert not path.exists()


async def test_bad_mapping_is_422_before_any_row(contacts_app: Apps) -> None:
    _, client = contacts_app
    content = b"Email,Name\na@example.com,A\n"

    missing_column = await upload(client, content, {"Email": "email", "Birthday": "attributes.birthday"})
    no_email = await upload(client, content, {"Name": "first_name"})
    not_json = await client.post("/imports", files={"file": ("a.csv", content)}, data={"mapping": "{email"})
    bad_mode = await upload(client, content, {"Email": "email"}, mode="replace")

    assert missing_column.status_code == 422
    assert missing_column.json()["errors"][0]["field"] == "mapping.Birthday"
    assert no_email.json()["errors"][0]["field"] == "mapping"
    assert not_json.json()["errors"][0]["field"] == "mapping"
    assert bad_mode.json()["errors"][0]["field"] == "mode"


async def test_utf16_file_is_422(contacts_app: Apps) -> None:
    _, client = contacts_app

    response = await upload(client, "email\na@example.com\n".encode("utf-16"), {"email": "email"})

    assert response.status_code == 422
    assert "UTF-16" in response.json()["detail"]


async def test_create_only_rejects_existing(contacts_app: Apps) -> None:
    app, client = contacts_app
    existing = await create_contact(client, first_name="Kept")
    content = f"email,first_name\n{existing['email']},Replaced\n{unique_email()},New\n".encode()

    report = await _import(app, client, content, {"email": "email", "first_name": "first_name"}, mode="create_only")

    assert report["created"] == 1
    assert [(row["line"], row["reason"]) for row in report["failed"]] == [(2, "contact exists")]
    assert (await client.get(f"/contacts/{existing['id']}")).json()["first_name"] == "Kept"


async def test_import_moves_stage_forward_with_import_actor(contacts_app: Apps) -> None:
    app, client = contacts_app
    contact = await create_contact(client)
    content = f"email,stage\n{contact['email']},Lead\n".encode()

    accepted = await upload(client, content, {"email": "email", "stage": "stage"})
    await run_import_now(app, accepted.json()["id"])

    entries = (await client.get(f"/contacts/{contact['id']}/stage-history")).json()["items"]
    assert (entries[-1]["to"], entries[-1]["actor"]) == ("lead", f"import:{accepted.json()['id']}")


async def test_progress_is_readable_between_chunks(contacts_app: Apps) -> None:
    app, client = contacts_app
    tag = uuid.uuid4().hex[:8]
    content = ("email\n" + "\n".join(f"p{index}-{tag}@example.com" for index in range(30)) + "\n").encode()
    accepted = await upload(client, content, {"email": "email"})
    import_id = accepted.json()["id"]
    async with app.state.db.session() as session:
        job = await session.get(ImportJob, import_id)
    assert job is not None

    from services.contacts.imports.csv_reader import ContactCsvReader

    with io.BytesIO(content) as file:
        rows = list(ContactCsvReader(file, job.mapping))
    report = restore_report({})
    await _commit_chunk(worker_context(app), job, rows[:10], report, 0, 200, {})
    halfway = await _report(client, import_id)

    assert (halfway["status"], halfway["created"], halfway["committed_line"]) == ("queued", 10, 11)
    assert 0 < halfway["progress"] < 1


async def test_interrupted_import_resumes_after_last_chunk(contacts_app: Apps) -> None:
    app, client = contacts_app
    tag = uuid.uuid4().hex[:8]
    content = ("email,first_name\n" + "\n".join(f"r{index}-{tag}@example.com,R{index}" for index in range(12)) + "\n").encode()
    accepted = await upload(client, content, {"email": "email", "first_name": "first_name"})
    import_id = accepted.json()["id"]
    async with app.state.db.session() as session:
        job = await session.get(ImportJob, import_id)
    assert job is not None
    from services.contacts.imports.csv_reader import ContactCsvReader

    with io.BytesIO(content) as file:
        rows = list(ContactCsvReader(file, job.mapping))
    await _commit_chunk(worker_context(app), job, rows[:5], restore_report({}), 0, 100, {})

    assert await run_import({**worker_context(app), "job_try": 2}, import_id) == "done"

    report = await _report(client, import_id)
    assert (report["created"], report["rows"], report["rejected"]) == (12, 12, 0)


async def test_worker_runs_queued_import(contacts_app: Apps) -> None:
    _, client = contacts_app
    email = unique_email("worker")

    accepted = await upload(client, f"email\n{email}\n".encode(), {"email": "email"})
    await drain_queue("contacts")

    assert (await _report(client, accepted.json()["id"]))["status"] == "done"
    assert (await client.get("/contacts", params={"email": email})).json()["items"]


async def test_sweep_requeues_import_that_redis_lost(contacts_app: Apps) -> None:
    app, client = contacts_app
    accepted = await upload(client, f"email\n{unique_email()}\n".encode(), {"email": "email"})
    import_id = accepted.json()["id"]
    redis, settings = app.state.redis, app.state.settings
    key = f"{settings.namespace}:import:{import_id}"
    await redis.delete(ARQ_JOB_KEY_PREFIX + key)
    async with app.state.db.session() as session:
        job = (await session.exec(select(ImportJob).where(ImportJob.id == import_id))).one()
        from datetime import timedelta

        job.updated_at = job.updated_at - timedelta(minutes=5)
        await session.commit()

    requeued = await sweep_imports(worker_context(app))

    assert requeued >= 1
    assert await redis.exists(ARQ_JOB_KEY_PREFIX + key)

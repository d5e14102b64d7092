"""Contacts through the internal API: identity, profile fields, attributes, companies and snapshots."""

import asyncio
import uuid
from datetime import timedelta

import pytest

from services.kit import clock
from services.kit.contracts import contacts as topics
from tests.contacts.support import Apps, create_contact, published, unique_email


async def test_create_returns_201_with_normalised_email(contacts_app: Apps) -> None:
    _, client = contacts_app
    local = f"Ann.{uuid.uuid4().hex[:8]}"

    response = await client.post("/contacts", json={"email": f"  {local}@Example.COM ", "first_name": "Ann"})

    assert response.status_code == 201
    assert response.json()["email"] == f"{local}@example.com"
    assert response.json()["stage"] == "subscriber"


@pytest.mark.parametrize("variant", ["upper", "spaces", "mixed"])
async def test_address_variants_are_one_contact(contacts_app: Apps, variant: str) -> None:
    _, client = contacts_app
    email = unique_email("case")
    first = await create_contact(client, email=email)
    spelled = {"upper": email.upper(), "spaces": f"\t {email}  ", "mixed": email.title()}[variant]

    second = await client.post("/contacts", json={"email": spelled})
    listed = await client.get("/contacts", params={"email": spelled})

    assert second.status_code == 409
    assert second.json()["existing_id"] == first["id"]
    assert first["id"] in second.json()["detail"]
    assert [item["id"] for item in listed.json()["items"]] == [first["id"]]


async def test_event_by_address_variant_finds_same_contact(contacts_app: Apps) -> None:
    _, client = contacts_app
    email = unique_email("evt")
    contact = await create_contact(client, email=email)

    response = await client.post("/events", json={"email": f" {email.upper()} ", "type": "page_view"})

    assert response.json()["contact_id"] == contact["id"]


async def test_invalid_email_is_422_naming_email(contacts_app: Apps) -> None:
    _, client = contacts_app

    response = await client.post("/contacts", json={"email": "not-an-email"})

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "email"


async def test_upsert_creates_then_updates(contacts_app: Apps) -> None:
    _, client = contacts_app
    email = unique_email("upsert")

    created = await client.put(f"/contacts/by-email/{email}", json={"first_name": "Una"})
    updated = await client.put(f"/contacts/by-email/{email.upper()}", json={"last_name": "Lee"})

    assert created.status_code == 201
    assert updated.status_code == 200
    assert updated.json()["id"] == created.json()["id"]
    assert (updated.json()["first_name"], updated.json()["last_name"]) == ("Una", "Lee")


async def test_concurrent_upserts_create_one_contact(contacts_app: Apps) -> None:
    _, client = contacts_app
    email = unique_email("race")

    responses = await asyncio.gather(
        *(client.put(f"/contacts/by-email/{email}", json={"first_name": f"Writer {n}"}) for n in range(6))
    )
    listed = await client.get("/contacts", params={"email": email})

    assert sorted(response.status_code for response in responses) == [200] * 5 + [201]
    assert len({response.json()["id"] for response in responses}) == 1
    assert [item["id"] for item in listed.json()["items"]] == [responses[0].json()["id"]]


async def test_upsert_disqualification_needs_stage_reason(contacts_app: Apps) -> None:
    _, client = contacts_app
    email = unique_email("dq")
    await client.put(f"/contacts/by-email/{email}", json={"stage": "lead"})

    without = await client.put(f"/contacts/by-email/{email}", json={"stage": "disqualified"})
    with_reason = await client.put(f"/contacts/by-email/{email}", json={"stage": "disqualified", "stage_reason": "competitor"})

    assert without.status_code == 422
    assert [error["field"] for error in without.json()["errors"]] == ["stage_reason"]
    assert with_reason.status_code == 200
    assert with_reason.json()["stage"] == "disqualified"


@pytest.mark.parametrize(
    "name",
    ["Zoë Ångström", "山田 太郎", "محمد علي", "Ψυχή", "👩‍💻 Dev", "Ñandú O'Brien-Smith"],
)
async def test_names_in_any_script_round_trip(contacts_app: Apps, name: str) -> None:
    _, client = contacts_app

    contact = await create_contact(client, first_name=name, last_name=name)
    read = await client.get(f"/contacts/{contact['id']}")

    assert read.json()["first_name"] == name
    assert read.json()["last_name"] == name


async def test_international_address_round_trips(contacts_app: Apps) -> None:
    _, client = contacts_app
    email = f"José.{uuid.uuid4().hex[:6]}@Bücher.de"

    contact = await create_contact(client, email=email)
    again = await client.post("/contacts", json={"email": email.lower()})

    assert contact["email"] == email.replace("Bücher", "bücher")
    assert again.status_code == 409


async def test_iana_timezone_is_validated(contacts_app: Apps) -> None:
    _, client = contacts_app

    good = await create_contact(client, timezone="Europe/Berlin")
    wrong_case = await client.post("/contacts", json={"email": unique_email(), "timezone": "europe/berlin"})
    offset = await client.post("/contacts", json={"email": unique_email(), "timezone": "+02:00"})

    assert good["timezone"] == "Europe/Berlin"
    assert wrong_case.status_code == 422
    assert wrong_case.json()["errors"][0]["field"] == "timezone"
    assert "Europe/Berlin" in wrong_case.json()["errors"][0]["message"]
    assert offset.status_code == 422


@pytest.mark.parametrize(
    ("method", "field", "body"),
    [
        ("POST", "timezone", {"timezone": "europe/berlin"}),
        ("POST", "attributes.shoe_size", {"attributes": {"shoe_size": 3}}),
        ("POST", "company.size", {"company": {"domain": "rejected.example", "size": -1}}),
        ("PUT", "timezone", {"timezone": "Mars/Base"}),
    ],
)
async def test_rejected_create_saves_nothing(contacts_app: Apps, method: str, field: str, body: dict[str, object]) -> None:
    _, client = contacts_app
    email = unique_email()

    if method == "POST":
        rejected = await client.post("/contacts", json={"email": email, **body})
    else:
        rejected = await client.put(f"/contacts/by-email/{email}", json=body)
    found = await client.get("/contacts", params={"email": email})
    retried = await client.post("/contacts", json={"email": email})

    assert rejected.status_code == 422
    assert rejected.json()["errors"][0]["field"] == field
    assert found.json()["items"] == []
    assert retried.status_code == 201


async def test_patch_changes_only_sent_fields(contacts_app: Apps) -> None:
    _, client = contacts_app
    contact = await create_contact(client, first_name="Ann", last_name="Lee")

    response = await client.patch(f"/contacts/{contact['id']}", json={"last_name": None, "timezone": "Asia/Tokyo"})

    assert response.status_code == 200
    body = response.json()
    assert (body["first_name"], body["last_name"], body["timezone"]) == ("Ann", None, "Asia/Tokyo")


async def test_patch_email_to_taken_address_is_409(contacts_app: Apps) -> None:
    _, client = contacts_app
    first = await create_contact(client)
    second = await create_contact(client)

    response = await client.patch(f"/contacts/{second['id']}", json={"email": first["email"].upper()})

    assert response.status_code == 409
    assert response.json()["existing_id"] == first["id"]


async def test_patch_cannot_touch_consent(contacts_app: Apps) -> None:
    _, client = contacts_app
    contact = await create_contact(client)

    response = await client.patch(f"/contacts/{contact['id']}", json={"consent": {"status": "subscribed"}})

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "consent"


async def test_unknown_contact_is_404(contacts_app: Apps) -> None:
    _, client = contacts_app

    response = await client.get(f"/contacts/{uuid.uuid4().hex}")

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


# Custom attributes


async def _define(client, name: str, type_: str, **extra: object) -> None:  # type: ignore[no-untyped-def]
    response = await client.put(f"/attributes/{name}", json={"type": type_, "label": name.title(), **extra})
    assert response.status_code in (200, 201), response.text


async def test_attribute_defined_then_used(contacts_app: Apps) -> None:
    _, client = contacts_app
    name = f"plan_{uuid.uuid4().hex[:6]}"
    first = await client.put(f"/attributes/{name}", json={"type": "enum", "label": "Plan", "allowed_values": ["Free", "Pro"]})
    again = await client.put(f"/attributes/{name}", json={"type": "enum", "label": "Plan tier", "allowed_values": ["Free", "Pro"]})

    contact = await create_contact(client, attributes={name: "Pro"})

    assert (first.status_code, again.status_code) == (201, 200)
    assert contact["attributes"] == {name: "Pro"}
    listed = (await client.get("/attributes")).json()["items"]
    assert {"name": name, "type": "enum", "label": "Plan tier"}.items() <= next(item for item in listed if item["name"] == name).items()


async def test_undefined_attribute_is_422_naming_it(contacts_app: Apps) -> None:
    _, client = contacts_app

    response = await client.post("/contacts", json={"email": unique_email(), "attributes": {"shoe_size": 42}})

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "attributes.shoe_size"
    assert response.json()["errors"][0]["type"] == "undefined"


@pytest.mark.parametrize(
    ("type_", "value"),
    [("number", "42"), ("boolean", "yes"), ("date", "31/02/2024"), ("string_list", "a;b"), ("string", 5)],
)
async def test_wrong_attribute_type_is_422(contacts_app: Apps, type_: str, value: object) -> None:
    _, client = contacts_app
    name = f"attr_{uuid.uuid4().hex[:6]}"
    await _define(client, name, type_)

    response = await client.post("/contacts", json={"email": unique_email(), "attributes": {name: value}})

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == f"attributes.{name}"


async def test_attribute_type_cannot_change(contacts_app: Apps) -> None:
    _, client = contacts_app
    name = f"size_{uuid.uuid4().hex[:6]}"
    await _define(client, name, "number")

    response = await client.put(f"/attributes/{name}", json={"type": "string", "label": "Size"})

    assert response.status_code == 409


async def test_enum_without_values_is_422(contacts_app: Apps) -> None:
    _, client = contacts_app

    response = await client.put(f"/attributes/tier_{uuid.uuid4().hex[:6]}", json={"type": "enum", "label": "Tier"})

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "allowed_values"


async def test_null_clears_attribute(contacts_app: Apps) -> None:
    _, client = contacts_app
    name = f"score_{uuid.uuid4().hex[:6]}"
    await _define(client, name, "number")
    contact = await create_contact(client, attributes={name: 7})

    response = await client.patch(f"/contacts/{contact['id']}", json={"attributes": {name: None}})

    assert response.json()["attributes"] == {}


# Companies


async def test_same_domain_shares_one_company(contacts_app: Apps) -> None:
    _, client = contacts_app
    domain = f"acme-{uuid.uuid4().hex[:6]}.com"

    first = await create_contact(client, company={"domain": domain.upper(), "name": "Acme", "size": 40})
    second = await create_contact(client, company={"domain": domain, "industry": "SaaS"})
    first_again = (await client.get(f"/contacts/{first['id']}")).json()

    assert second["company"]["id"] == first["company"]["id"]
    assert first_again["company"] == {
        "id": first["company"]["id"], "domain": domain, "name": "Acme", "size": 40, "industry": "SaaS",
    }


async def test_company_change_republishes_colleagues(contacts_app: Apps) -> None:
    app, client = contacts_app
    domain = f"globex-{uuid.uuid4().hex[:6]}.com"
    first = await create_contact(client, company={"domain": domain, "name": "Globex"})
    second = await create_contact(client, company={"domain": domain})

    await client.patch(f"/contacts/{second['id']}", json={"company": {"domain": domain, "industry": "Energy"}})

    snapshots = await published(app, topics.CONTACT_CHANGED, contact__id=first["id"])
    assert snapshots[-1]["contact"]["company"]["industry"] == "Energy"
    assert snapshots[-1]["changed_fields"] == ["company"]


async def test_company_url_is_422_naming_domain(contacts_app: Apps) -> None:
    _, client = contacts_app

    response = await client.post("/contacts", json={"email": unique_email(), "company": {"domain": "https://acme.com/"}})

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "company.domain"


async def test_company_null_unlinks(contacts_app: Apps) -> None:
    _, client = contacts_app
    contact = await create_contact(client, company={"domain": f"x-{uuid.uuid4().hex[:6]}.com"})

    response = await client.patch(f"/contacts/{contact['id']}", json={"company": None})

    assert response.json()["company"] is None


# Snapshots other services copy


async def test_every_change_publishes_full_snapshot(contacts_app: Apps) -> None:
    app, client = contacts_app
    domain = f"snap-{uuid.uuid4().hex[:6]}.com"
    contact = await create_contact(client, first_name="Sam", company={"domain": domain, "name": "Snap"})

    await client.patch(f"/contacts/{contact['id']}", json={"timezone": "America/New_York"})

    snapshots = await published(app, topics.CONTACT_CHANGED, contact__id=contact["id"])
    assert [snapshot["changed_fields"] for snapshot in snapshots] == [["company", "created", "first_name"], ["timezone"]]
    latest = snapshots[-1]["contact"]
    assert latest["timezone"] == "America/New_York"
    assert latest["company"]["domain"] == domain
    assert latest["consent"]["status"] == "subscribed"
    assert latest["stage"] == "subscriber"


async def test_unchanged_patch_publishes_nothing(contacts_app: Apps) -> None:
    app, client = contacts_app
    contact = await create_contact(client, first_name="Pat")

    await client.patch(f"/contacts/{contact['id']}", json={"first_name": "  Pat "})

    assert len(await published(app, topics.CONTACT_CHANGED, contact__id=contact["id"])) == 1


# Listing


async def test_list_filters_by_stage_and_updated_since(contacts_app: Apps) -> None:
    _, client = contacts_app
    clock.freeze(clock.now() + timedelta(days=400))
    since = clock.now()
    clock.advance(timedelta(seconds=1))
    lead = await create_contact(client, stage="lead")
    await create_contact(client)

    response = await client.get("/contacts", params={"stage": "LEAD", "updated_since": since.isoformat()})

    assert [item["id"] for item in response.json()["items"]] == [lead["id"]]


async def test_list_pages_with_cursor(contacts_app: Apps) -> None:
    _, client = contacts_app
    clock.freeze(clock.now() + timedelta(days=800))
    since = clock.now()
    created = []
    for _ in range(5):
        clock.advance(timedelta(seconds=1))
        created.append((await create_contact(client))["id"])

    seen: list[str] = []
    cursor = None
    while True:
        params = {"updated_since": since.isoformat(), "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/contacts", params=params)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert seen == created


async def test_list_rejects_naive_updated_since(contacts_app: Apps) -> None:
    _, client = contacts_app

    response = await client.get("/contacts", params={"updated_since": "2024-05-01T10:00:00"})

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "updated_since"

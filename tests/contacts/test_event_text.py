"""Event properties must be text: a lone surrogate is rejected with a 422 that names where it is."""

import pytest

from tests.contacts.support import Apps

JSON = {"content-type": "application/json"}


# Raw JSON properties with a lone surrogate, and the path the 422 names. A bad key is named with escapes.
CASES = [
    (b'{"page": {"urls": ["/a", "\\ud800"]}}', "properties.page.urls[1]"),
    (b'{"\\udc00key": 1}', "properties.\\udc00key"),
]


@pytest.mark.parametrize(("properties", "path"), CASES)
async def test_lone_surrogate_rejected(contacts_app: Apps, properties: bytes, path: str) -> None:
    _, client = contacts_app
    body = b'{"email": "text@example.com", "type": "page_view", "properties": ' + properties + b"}"

    response = await client.post("/events", content=body, headers=JSON)

    assert response.status_code == 422, response.text
    assert path in response.json()["errors"][0]["message"]


async def test_batch_names_bad_event(contacts_app: Apps) -> None:
    _, client = contacts_app
    body = (
        b'{"events": [{"email": "text@example.com", "type": "page_view", "properties": {"url": "/ok"}},'
        b' {"email": "text@example.com", "type": "page_view", "properties": {"url": "\\ud800"}}]}'
    )

    response = await client.post("/events/batch", content=body, headers=JSON)
    stored, rejected = response.json()["items"]

    assert response.status_code == 202, response.text
    assert stored["status"] == "stored"
    assert rejected["status"] == "rejected"
    assert "properties.url" in rejected["error"]["errors"][0]["message"]


async def test_other_languages_stored(contacts_app: Apps) -> None:
    _, client = contacts_app
    event = {"email": "text@example.com", "type": "page_view", "properties": {"title": "Prix 🙂 価格 ü"}}

    response = await client.post("/events", json=event)

    assert response.status_code == 202, response.text

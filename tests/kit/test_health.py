"""Health and readiness: alive always, ready only with database and Redis reachable."""

import httpx

from services.cli import services as registry
from services.cli.supervisor import free_port
from services.contacts.app import create_app
from services.contacts.settings import ContactsSettings


async def test_ready_when_dependencies_reachable(contacts_app: tuple[object, httpx.AsyncClient]) -> None:
    _, client = contacts_app

    health = await client.get("/healthz")
    ready = await client.get("/readyz")

    assert health.json() == {"status": "ok"}
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "redis": "ok"}


async def test_not_ready_when_redis_unreachable() -> None:
    settings = ContactsSettings(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    app = create_app(settings)

    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://contacts") as client:
            ready = await client.get("/readyz")
            alive = await client.get("/healthz")

    assert ready.status_code == 503
    assert ready.headers["retry-after"] == "5"
    assert ready.json()["checks"]["redis"].startswith("unavailable")
    assert alive.status_code == 200


async def test_metrics_count_requests(contacts_app: tuple[object, httpx.AsyncClient]) -> None:
    _, client = contacts_app
    await client.get("/healthz")

    metrics = await client.get("/metrics")

    assert 'nurture_http_requests_total{method="GET",route="/healthz",service="contacts",status="200"}' in metrics.text


def test_every_service_loads() -> None:
    for service in ("contacts", "scoring", "sequencer", "gateway"):
        assert registry.create_app(service).title.startswith("nurture")
        assert registry.worker_settings(service).queue_name.endswith(f":queue:{service}")

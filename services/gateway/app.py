"""The gateway: the one public API in front of the other services."""

from fastapi import FastAPI

from services.gateway.routes.contacts import router as contacts_router
from services.gateway.routes.events import router as events_router
from services.gateway.settings import GatewaySettings
from services.kit.app import create_service_app


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    return create_service_app(
        settings,
        title="nurture",
        version="1",
        description="Public API of the nurture lead-nurturing platform.",
        routers=[events_router, contacts_router],
        clients=["contacts", "scoring", "sequencer"],
        internal=False,
    )

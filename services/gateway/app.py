"""The gateway: the one public API in front of the other services."""

from fastapi import FastAPI

from services.gateway.routes import (
    contacts,
    events,
    imports,
    reports,
    scoring,
    segments,
    sequences,
    stages,
    templates,
    tracking,
    webhooks,
)
from services.gateway.settings import GatewaySettings
from services.kit.app import create_service_app


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    return create_service_app(
        settings,
        title="nurture",
        version="1",
        description="Public API of the nurture lead-nurturing platform.",
        routers=[
            contacts.router,
            events.router,
            imports.router,
            segments.router,
            stages.router,
            scoring.router,
            sequences.router,
            templates.router,
            reports.router,
            tracking.router,
            webhooks.router,
        ],
        clients=["contacts", "scoring", "sequencer"],
        internal=False,
    )

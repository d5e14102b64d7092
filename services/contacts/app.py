"""The contacts service's FastAPI application."""

from fastapi import FastAPI

from services.contacts.db import OutboxMessage
from services.contacts.people.router import router as people_router
from services.contacts.settings import ContactsSettings
from services.contacts.timeline.router import router as timeline_router
from services.kit.app import create_service_app
from services.kit.outbox import Outbox


def create_app(settings: ContactsSettings | None = None) -> FastAPI:
    settings = settings or ContactsSettings()
    outbox = Outbox(OutboxMessage, service="contacts", namespace=settings.namespace)
    return create_service_app(
        settings,
        title="nurture contacts",
        routers=[people_router, timeline_router],
        outbox=outbox,
    )

"""The contacts service's FastAPI application."""

from fastapi import FastAPI

from services.contacts.attributes.router import router as attributes_router
from services.contacts.consent.router import router as consent_router
from services.contacts.db import OutboxMessage, install_sql_functions
from services.contacts.errors import install_domain_errors
from services.contacts.imports.router import router as imports_router
from services.contacts.people.router import router as people_router
from services.contacts.privacy.router import router as privacy_router
from services.contacts.privacy.service import EXPORTING_SERVICES
from services.contacts.reports.router import router as reports_router
from services.contacts.segments.router import router as segments_router
from services.contacts.settings import ContactsSettings
from services.contacts.stages.router import router as stages_router
from services.contacts.timeline.router import router as timeline_router
from services.kit.app import create_service_app
from services.kit.outbox import Outbox


async def _install_sql_functions(app: FastAPI) -> None:
    await install_sql_functions(app.state.db.engine)


def create_app(settings: ContactsSettings | None = None) -> FastAPI:
    settings = settings or ContactsSettings()
    outbox = Outbox(OutboxMessage, service="contacts", namespace=settings.namespace)
    app = create_service_app(
        settings,
        title="nurture contacts",
        routers=[
            people_router,
            privacy_router,
            attributes_router,
            consent_router,
            timeline_router,
            stages_router,
            segments_router,
            imports_router,
            reports_router,
        ],
        outbox=outbox,
        clients=EXPORTING_SERVICES,
        on_startup=[_install_sql_functions],
    )
    install_domain_errors(app)
    return app

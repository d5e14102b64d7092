"""The sequencer service's FastAPI application."""

from fastapi import FastAPI

from services.kit.app import create_service_app
from services.kit.outbox import Outbox
from services.sequencer.db import OutboxMessage
from services.sequencer.engagement.router import router as messages_router
from services.sequencer.enrolments.router import router as enrolments_router
from services.sequencer.privacy.router import router as privacy_router
from services.sequencer.reports.router import router as reports_router
from services.sequencer.sequences.router import router as sequences_router
from services.sequencer.settings import SequencerSettings
from services.sequencer.templates.router import router as templates_router


def create_app(settings: SequencerSettings | None = None) -> FastAPI:
    settings = settings or SequencerSettings()
    outbox = Outbox(OutboxMessage, service="sequencer", namespace=settings.namespace)
    return create_service_app(
        settings,
        title="nurture sequencer",
        routers=[templates_router, sequences_router, enrolments_router, messages_router, privacy_router, reports_router],
        outbox=outbox,
        clients=["contacts"],
    )

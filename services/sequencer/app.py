"""The sequencer service's FastAPI application."""

from fastapi import FastAPI

from services.kit.app import create_service_app
from services.kit.outbox import Outbox
from services.sequencer.db import OutboxMessage
from services.sequencer.settings import SequencerSettings


def create_app(settings: SequencerSettings | None = None) -> FastAPI:
    settings = settings or SequencerSettings()
    outbox = Outbox(OutboxMessage, service="sequencer", namespace=settings.namespace)
    return create_service_app(settings, title="nurture sequencer", routers=[], outbox=outbox)

"""The contacts service's arq worker: consumes score changes and relays its outbox."""

from services.contacts.db import OutboxMessage, ProcessedEvent
from services.contacts.scores.handlers import on_score_changed
from services.contacts.settings import ContactsSettings
from services.kit.consumer import EventConsumer
from services.kit.contracts import scoring as scoring_topics
from services.kit.outbox import Outbox
from services.kit.worker import build_worker_settings


def worker_settings(settings: ContactsSettings | None = None) -> type:
    settings = settings or ContactsSettings()
    consumer = EventConsumer(ProcessedEvent, {scoring_topics.SCORE_CHANGED: on_score_changed})
    return build_worker_settings(
        settings,
        functions=[consumer.function()],
        outbox=Outbox(OutboxMessage, service="contacts", namespace=settings.namespace),
    )

"""The scoring service's arq worker: scores published events and relays its outbox."""

from services.kit.consumer import EventConsumer
from services.kit.contracts import contacts as contact_topics
from services.kit.outbox import Outbox
from services.kit.worker import build_worker_settings
from services.scoring.db import OutboxMessage, ProcessedEvent
from services.scoring.history.handlers import on_event_recorded
from services.scoring.settings import ScoringSettings


def worker_settings(settings: ScoringSettings | None = None) -> type:
    settings = settings or ScoringSettings()
    consumer = EventConsumer(ProcessedEvent, {contact_topics.EVENT_RECORDED: on_event_recorded})
    return build_worker_settings(
        settings,
        functions=[consumer.function()],
        outbox=Outbox(OutboxMessage, service="scoring", namespace=settings.namespace),
    )

"""The sequencer service's arq worker: reacts to published events and relays its outbox."""

from services.kit.consumer import EventConsumer
from services.kit.outbox import Outbox
from services.kit.worker import build_worker_settings
from services.sequencer.db import OutboxMessage, ProcessedEvent
from services.sequencer.settings import SequencerSettings


def worker_settings(settings: SequencerSettings | None = None) -> type:
    settings = settings or SequencerSettings()
    consumer = EventConsumer(ProcessedEvent, {})
    return build_worker_settings(
        settings,
        functions=[consumer.function()],
        outbox=Outbox(OutboxMessage, service="sequencer", namespace=settings.namespace),
    )

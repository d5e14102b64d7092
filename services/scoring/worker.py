"""The scoring service's arq worker: scores published events, runs scoring jobs, relays its outbox."""

from services.kit.consumer import EventConsumer
from services.kit.outbox import Outbox
from services.kit.worker import build_worker_settings
from services.scoring.db import OutboxMessage, ProcessedEvent
from services.scoring.history.handlers import HANDLERS, prefetch_batch
from services.scoring.jobs.tasks import job_function, requeue_stale_jobs
from services.scoring.settings import ScoringSettings
from services.scoring.thresholds.decay import check_decayed_mqls


def event_consumer() -> EventConsumer:
    """Return the consumer of the events scoring subscribes to, as its worker runs it."""
    return EventConsumer(ProcessedEvent, HANDLERS, prefetch=prefetch_batch)


def worker_settings(settings: ScoringSettings | None = None) -> type:
    settings = settings or ScoringSettings()
    return build_worker_settings(
        settings,
        # Batches of events run one at a time, so more slots would only hold batches waiting their turn.
        max_jobs=4,
        functions=[*event_consumer().functions(), job_function()],
        outbox=Outbox(OutboxMessage, service="scoring", namespace=settings.namespace),
        periodic=[requeue_stale_jobs, check_decayed_mqls],
    )

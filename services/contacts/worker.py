"""The contacts service's arq worker: consumes scoring and sequencer events, runs imports and segment checks."""

from typing import Any

from arq.worker import func
from sqlmodel.ext.asyncio.session import AsyncSession

from services.contacts.db import OutboxMessage, ProcessedEvent, install_sql_functions
from services.contacts.engagement.handlers import on_email_engagement, record_batch_engagement
from services.contacts.imports.service import RUN_IMPORT_JOB
from services.contacts.imports.tasks import MAX_TRIES, run_import, sweep_imports
from services.contacts.publishing import flush_batch_changes
from services.contacts.scores.handlers import on_mql_reached, on_score_changed, prefetch_contacts
from services.contacts.segments.tasks import recheck_segment_windows
from services.contacts.settings import ContactsSettings
from services.kit.consumer import EventConsumer
from services.kit.contracts import scoring as scoring_topics
from services.kit.contracts import sequencer as sequencer_topics
from services.kit.outbox import Outbox
from services.kit.worker import build_worker_settings


async def _finish_batch(session: AsyncSession, ctx: dict[str, Any]) -> None:
    """Store a batch's engagement events, then publish and re-segment the contacts the batch changed."""
    await record_batch_engagement(session, ctx)
    await flush_batch_changes(session, ctx)


async def _install_sql_functions(ctx: dict[str, Any]) -> None:
    await install_sql_functions(ctx["db"].engine)


def worker_settings(settings: ContactsSettings | None = None) -> type:
    settings = settings or ContactsSettings()
    consumer = EventConsumer(
        ProcessedEvent,
        {
            scoring_topics.SCORE_CHANGED: on_score_changed,
            scoring_topics.MQL_REACHED: on_mql_reached,
            sequencer_topics.EMAIL_ENGAGEMENT: on_email_engagement,
        },
        prefetch=prefetch_contacts,
        after_batch=_finish_batch,
    )
    return build_worker_settings(
        settings,
        # Batches of events run one at a time, so more slots would only hold batches waiting their turn.
        max_jobs=4,
        functions=[*consumer.functions(), func(run_import, name=RUN_IMPORT_JOB, max_tries=MAX_TRIES)],
        outbox=Outbox(OutboxMessage, service="contacts", namespace=settings.namespace),
        periodic=[recheck_segment_windows, sweep_imports],
        on_startup=[_install_sql_functions],
    )

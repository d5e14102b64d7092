"""Rescoring one chunk of contacts from their stored history with a model's active version."""

import asyncio
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from services.kit import clock
from services.kit.logging import get_logger
from services.scoring.history.service import contact_document, events_of, facts_of, lock_contacts
from services.scoring.jobs.models import ScoringJob
from services.scoring.jobs.service import SUPERSEDED, JobStopped
from services.scoring.rules import CompiledRuleSet, Replay, replay_many
from services.scoring.rulesets.service import ActiveModel, compiled_version, get_model
from services.scoring.scores.models import LedgerRow
from services.scoring.scores.service import ScoringRun, load_books, replace_ledgers

log = get_logger(__name__)


async def rescore_chunk(session: AsyncSession, ctx: dict[str, Any], job: ScoringJob, contact_ids: list[str]) -> None:
    """Replace the model's ledger of each contact with a replay of its history, and rescore it."""
    model = await _job_model(session, job)
    now = clock.now()

    await lock_contacts(session, contact_ids)
    facts = await facts_of(session, contact_ids)
    history = await events_of(session, contact_ids)
    books = await load_books(session, contact_ids, [model.name])
    contacts = {contact_id: contact_document(facts.get(contact_id)) for contact_id in contact_ids}
    ledgers = await asyncio.to_thread(replay_all, model.compiled, contacts, history, now)

    statement = delete(LedgerRow).where(col(LedgerRow.model) == model.name, col(LedgerRow.contact_id).in_(contact_ids))
    await session.exec(statement)  # type: ignore[call-overload]
    run = ScoringRun(session, ctx["outbox"], source="rescore", now=now, bulk=True)
    await replace_ledgers(run, books, model, ledgers)
    await session.flush()


def replay_all(
    compiled: CompiledRuleSet,
    contacts: Mapping[str, Mapping[str, Any]],
    history: Mapping[str, Sequence[Mapping[str, Any]]],
    now: datetime,
) -> dict[str, Replay]:
    """Replay each contact's history (CPU-bound; runs in a thread). A contact whose input is malformed is left out."""
    ledgers, failed = replay_many(compiled, contacts, history, now=now)
    for contact_id, error in failed.items():
        log.error("rescore.contact_skipped", contact_id=contact_id, field=error.field, error=error.message)
    return ledgers


async def _job_model(session: AsyncSession, job: ScoringJob) -> ActiveModel:
    model = await get_model(session, job.model)
    if job.version is None or model.active_version != job.version:
        raise JobStopped(
            SUPERSEDED,
            f"model {job.model!r} has version {model.active_version} active now; start a new rescore",
        )
    compiled = await compiled_version(session, model.name, job.version)
    return ActiveModel(model.name, job.version, compiled, model.demote_below_threshold)

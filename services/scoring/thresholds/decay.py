"""Demoting MQLs whose score decayed below the threshold, for models with `demote_below_threshold`.

Decay lowers scores without any event, so a periodic check looks at each fired MQL of such a
model once per `decay_check_interval_s` of platform time.
"""

import time
from datetime import timedelta
from typing import Any

from sqlmodel import col, select

from services.kit import clock
from services.kit.logging import get_logger
from services.scoring.history.service import lock_contacts
from services.scoring.rulesets.service import ActiveModel, active_models
from services.scoring.scores.service import current_score, load_books
from services.scoring.thresholds.models import ThresholdState
from services.scoring.thresholds.triggers import evaluate, mql_trigger, mql_trigger_key

# How often, in wall-clock seconds, the worker runs the check.
CHECK_EVERY_S = 5.0

log = get_logger(__name__)

_last_check = {"at": 0.0}


async def check_decayed_mqls(ctx: dict[str, Any], *, force: bool = False) -> int:
    """Re-check fired MQLs of demoting models not checked for a while; return how many were checked."""
    if not force and time.monotonic() - _last_check["at"] < CHECK_EVERY_S:
        return 0
    _last_check["at"] = time.monotonic()

    checked = 0
    async with ctx["db"].session() as session:
        models = [model for model in await active_models(session) if model.demote_below_threshold]
    for model in models:
        checked += await _check_model(ctx, model)
    return checked


async def _check_model(ctx: dict[str, Any], model: ActiveModel) -> int:
    settings = ctx["settings"]
    now = clock.now()
    cutoff = now - timedelta(seconds=settings.decay_check_interval_s)
    trigger = mql_trigger(model)
    async with ctx["db"].session() as session:
        query = select(ThresholdState.contact_id).where(
            ThresholdState.trigger == mql_trigger_key(model.name),
            col(ThresholdState.fired).is_(True),
            ThresholdState.updated_at < cutoff,
        )
        contact_ids = list((await session.exec(query.order_by(ThresholdState.contact_id).limit(settings.decay_check_batch))).all())
        if not contact_ids:
            return 0

        await lock_contacts(session, contact_ids)
        books = await load_books(session, contact_ids, [model.name])
        for contact_id in contact_ids:
            book = books[contact_id]
            state = book.states.get(trigger.key)
            await evaluate(
                session,
                ctx["outbox"],
                contact_id=contact_id,
                trigger=trigger,
                state=state,
                previous=state.last_score if state is not None else None,
                current=current_score(model, book, now).total,
                source="decay",
                now=now,
            )
        await session.commit()
    log.info("decay.checked", model=model.name, contacts=len(contact_ids))
    return len(contact_ids)

"""Running the delivery steps of gateway rows, with retries that survive restarts.

A new row gets a job on the gateway's queue at once. The job and the periodic sweep both claim a
row by moving its `next_attempt_at` forward with a compare-and-set, so only one of them runs it at
a time. A job also claims the table's other new rows, so a burst of tracking hits or webhook
events reaches the contacts service as a few batch requests instead of one request per row. Every
step is idempotent (timeline events carry a fixed id, consent is set to a value), so a step
repeated after a crash changes nothing. A transient failure (contacts down, 5xx, timeout)
schedules another attempt with exponential backoff; a permanent one (4xx) marks the row failed.
"""

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import httpx
from arq.connections import ArqRedis
from redis.exceptions import RedisError
from sqlalchemy import update
from sqlmodel import select

from services.gateway.delivery.models import DeliveryColumns
from services.gateway.webhooks import WebhookRejected, confirm_sns_subscription
from services.kit import clock
from services.kit.db import Database
from services.kit.logging import get_logger
from services.kit.problems import Problem
from services.kit.queue import job_id, queue_name

log = get_logger(__name__)

DELIVERY_JOB = "deliver_row"
# The job normally delivers a new row within milliseconds; the sweep waits this long before it
# takes a row whose job may have been lost.
SWEEP_GRACE = timedelta(seconds=10)
# How long a claimed row stays away from other deliverers while its steps run.
CLAIM_LEASE = timedelta(seconds=60)
SWEEP_BATCH = 100
# New rows one job claims and delivers together; the contacts service takes up to 1,000 events a request.
NEW_ROWS_BATCH = 100
_TRANSIENT_STATUSES = frozenset({408, 425, 429})


class StepFailed(Exception):
    """A failed delivery step; `transient` is true when another attempt may succeed."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


def contacts_step(
    method: str, path: str, body: dict[str, Any], params: dict[str, str] | None = None
) -> dict[str, Any]:
    """Return a step that calls the contacts service."""
    return {"call": "contacts", "method": method, "path": path, "json": body, "params": params or {}}


def sns_subscribe_step(url: str) -> dict[str, Any]:
    """Return a step that confirms an SNS subscription by visiting its validated SubscribeURL."""
    return {"call": "sns_subscribe", "url": url}


class DeliveryQueue:
    """Enqueues delivery jobs on the gateway's queue; a Redis failure leaves the work to the sweep."""

    def __init__(self, redis: ArqRedis, namespace: str) -> None:
        self.redis = redis
        self.namespace = namespace

    async def enqueue(self, table: str, row_ids: Sequence[str]) -> None:
        for row_id in row_ids:
            try:
                await self.redis.enqueue_job(
                    DELIVERY_JOB,
                    table,
                    row_id,
                    _job_id=job_id(self.namespace, "gateway", "deliver", table, row_id),
                    _queue_name=queue_name(self.namespace, "gateway"),
                )
            except (RedisError, OSError) as error:
                log.warning("delivery.enqueue_failed", table=table, row_id=row_id, error=repr(error))
                return


class Deliverer:
    """Claims rows of the delivery tables and runs their steps."""

    def __init__(
        self,
        db: Database,
        models: dict[str, type[DeliveryColumns]],
        *,
        contacts: Any,
        provider_http: httpx.AsyncClient | None,
        max_backoff_s: int,
    ) -> None:
        self.db = db
        self.models = models
        self.contacts = contacts
        self.provider_http = provider_http
        self.max_backoff_s = max_backoff_s

    async def deliver(self, table: str, row_id: str, *, together: bool = True) -> str:
        """Deliver a new row with the table's other new rows; return this row's outcome for logs and tests.

        With `together` false only the row itself is taken, for a caller that waits on it.
        """
        model = self.models[table]
        claimed = await self._claim_new(model, row_id, NEW_ROWS_BATCH if together else 1)
        if not claimed:
            return await self._state_of(model, row_id)

        outcomes = await self._run_claimed(model, table, claimed)
        if row_id not in outcomes:
            return await self._state_of(model, row_id)
        return outcomes[row_id]

    async def deliver_due(self, table: str, row_id: str) -> str:
        """Deliver one row that the sweep found due, if it is pending and not claimed."""
        model = self.models[table]
        async with self.db.session() as session:
            row = await session.get(model, row_id)
            if row is None or row.state != "pending":
                return "absent" if row is None else row.state
            steps, seen = list(row.steps), row.next_attempt_at

        # A job may have leased the row since the sweep listed it, which moved its next attempt on.
        if seen > clock.now():
            return "claimed_elsewhere"
        if not await self._claim(model, row_id, seen):
            return "claimed_elsewhere"
        outcome = await self._run_steps(model, table, row_id, steps)
        if outcome == "delivered":
            await self._mark_delivered(model, table, [row_id])
        return outcome

    async def sweep(self) -> int:
        """Deliver pending rows that are due (their job was lost or their retry time came)."""
        delivered = 0
        for table, model in self.models.items():
            async with self.db.session() as session:
                query = (
                    select(model.id)  # type: ignore[attr-defined]
                    .where(model.state == "pending", model.next_attempt_at <= clock.now())
                    .order_by(model.next_attempt_at)
                    .limit(SWEEP_BATCH)
                )
                row_ids = list((await session.exec(query)).all())
            for row_id in row_ids:
                if await self.deliver_due(table, row_id) == "delivered":
                    delivered += 1
        return delivered

    async def _claim_new(self, model: type[DeliveryColumns], row_id: str, limit: int) -> dict[str, list[dict[str, Any]]]:
        """Claim `row_id` and other rows never attempted, `limit` in all, and return the steps of each row claimed.

        Only a row with no attempt is taken, so a row that the sweep or another job claimed, or
        that waits for its retry, stays with them.
        """
        columns: Any = model
        async with self.db.session() as session:
            others = (
                select(columns.id)
                .where(columns.state == "pending", columns.attempts == 0, columns.id != row_id)
                .order_by(columns.next_attempt_at)
                .limit(limit - 1)
            )
            row_ids = [row_id, *(await session.exec(others)).all()] if limit > 1 else [row_id]
            statement = (
                update(model)
                .where(columns.id.in_(row_ids), columns.state == "pending", columns.attempts == 0)
                .values(next_attempt_at=clock.now() + CLAIM_LEASE, attempts=columns.attempts + 1)
                .returning(columns.id, columns.steps)
            )
            claimed = {claimed_id: list(steps) for claimed_id, steps in (await session.exec(statement)).all()}
            await session.commit()
        return claimed

    async def _state_of(self, model: type[DeliveryColumns], row_id: str) -> str:
        async with self.db.session() as session:
            row = await session.get(model, row_id)
        if row is None:
            return "absent"
        return "claimed_elsewhere" if row.state == "pending" else row.state

    async def _run_claimed(self, model: type[DeliveryColumns], table: str, claimed: dict[str, list[dict[str, Any]]]) -> dict[str, str]:
        """Run the claimed rows' steps: the rows that only store an event go as batch requests, the others alone."""
        outcomes: dict[str, str] = {}
        events: dict[str, dict[str, Any]] = {}
        unavailable: StepFailed | None = None
        for row_id, steps in claimed.items():
            event = _single_event(steps)
            if event is not None:
                events[row_id] = event
            elif unavailable is not None:
                # Once a call failed in a way a retry may cure, the next rows retry later too, so a
                # service that is down costs one timeout per job instead of one per row.
                outcomes[row_id] = await self._record_failure(model, table, row_id, unavailable)
            else:
                outcomes[row_id] = await self._run_steps(model, table, row_id, steps)
                if outcomes[row_id] == "retry":
                    unavailable = StepFailed("not attempted: a call for another row of the same delivery failed", transient=True)

        if events and unavailable is not None:
            for row_id in events:
                outcomes[row_id] = await self._record_failure(model, table, row_id, unavailable)
        elif events:
            outcomes.update(await self._store_events(model, table, events))
        await self._mark_delivered(model, table, [row_id for row_id, outcome in outcomes.items() if outcome == "delivered"])
        return outcomes

    async def _store_events(self, model: type[DeliveryColumns], table: str, events: dict[str, dict[str, Any]]) -> dict[str, str]:
        """Send the rows' events in one batch request and record each row's result.

        When the contacts service is down or busy, every row gets a retry without another request.
        When it rejects the request as a whole, each row runs alone, so each gets its own result.
        """
        row_ids = list(events)
        try:
            answer = await self.contacts.request("POST", "/events/batch", json={"events": [events[row_id] for row_id in row_ids]})
        except Problem as problem:
            transient = problem.status >= 500 or problem.status in _TRANSIENT_STATUSES
            log.warning("delivery.batch_failed", table=table, rows=len(row_ids), status=problem.status, error=problem.detail)
            if transient:
                failure = StepFailed(f"contacts returned {problem.status}: {problem.detail}", transient=True)
                return {row_id: await self._record_failure(model, table, row_id, failure) for row_id in row_ids}
            return {row_id: await self._run_steps(model, table, row_id, [_events_step(events[row_id])]) for row_id in row_ids}

        outcomes: dict[str, str] = {}
        items = answer.get("items", []) if isinstance(answer, dict) else []
        results = {item["index"]: item for item in items if isinstance(item, dict) and "index" in item}
        for index, row_id in enumerate(row_ids):
            item = results.get(index)
            if item is None:
                failure = StepFailed("contacts returned no result for the event", transient=True)
                outcomes[row_id] = await self._record_failure(model, table, row_id, failure)
            elif item.get("status") in ("stored", "duplicate"):
                outcomes[row_id] = "delivered"
            else:
                error = item.get("error") or {}
                status = int(error.get("status", 422))
                transient = status >= 500 or status in _TRANSIENT_STATUSES
                failure = StepFailed(f"contacts returned {status}: {error.get('detail', '')}", transient=transient)
                outcomes[row_id] = await self._record_failure(model, table, row_id, failure)
        return outcomes

    async def _run_steps(self, model: type[DeliveryColumns], table: str, row_id: str, steps: list[dict[str, Any]]) -> str:
        """Run a claimed row's steps in order; record a failure, and return `delivered` when all succeeded."""
        try:
            for step in steps:
                await self.run_step(step)
        except StepFailed as failure:
            return await self._record_failure(model, table, row_id, failure)
        return "delivered"

    async def _mark_delivered(self, model: type[DeliveryColumns], table: str, row_ids: list[str]) -> None:
        if not row_ids:
            return
        columns: Any = model
        async with self.db.session() as session:
            await session.exec(
                update(model).where(columns.id.in_(row_ids)).values(state="delivered", delivered_at=clock.now(), last_error=None)
            )
            await session.commit()
        for row_id in row_ids:
            log.info("delivery.delivered", table=table, row_id=row_id)

    async def run_step(self, step: dict[str, Any]) -> None:
        """Run one step; raise `StepFailed` saying whether a retry may help."""
        if step.get("call") == "contacts":
            await self._call_contacts(step)
        elif step.get("call") == "sns_subscribe":
            await self._confirm_subscription(str(step["url"]))
        else:
            raise StepFailed(f"unknown delivery step {step.get('call')!r}", transient=False)

    async def _call_contacts(self, step: dict[str, Any]) -> None:
        try:
            await self.contacts.request(step["method"], step["path"], json=step["json"], params=step.get("params") or None)
        except Problem as problem:
            transient = problem.status >= 500 or problem.status in _TRANSIENT_STATUSES
            raise StepFailed(f"contacts returned {problem.status}: {problem.detail}", transient=transient) from problem

    async def _confirm_subscription(self, url: str) -> None:
        if self.provider_http is None:
            raise StepFailed("no HTTP client for provider calls in this process", transient=True)
        try:
            await confirm_sns_subscription(self.provider_http, url)
        except WebhookRejected as rejected:
            raise StepFailed(f"SubscribeURL rejected: {rejected.reason}", transient=False) from rejected
        except httpx.HTTPStatusError as error:
            transient = error.response.status_code >= 500 or error.response.status_code in _TRANSIENT_STATUSES
            raise StepFailed(f"SNS returned {error.response.status_code}", transient=transient) from error
        except httpx.HTTPError as error:
            raise StepFailed(f"SNS subscription confirmation failed: {error!r}", transient=True) from error
        log.info("webhook.sns_subscription_confirmed", url=url.split("?")[0])

    async def _claim(self, model: type[DeliveryColumns], row_id: str, seen: Any) -> bool:
        async with self.db.session() as session:
            result = await session.exec(
                update(model)
                .where(model.id == row_id, model.state == "pending", model.next_attempt_at == seen)  # type: ignore[attr-defined]
                .values(next_attempt_at=clock.now() + CLAIM_LEASE, attempts=model.attempts + 1)
            )
            await session.commit()
        return result.rowcount == 1

    async def _record_failure(self, model: type[DeliveryColumns], table: str, row_id: str, failure: StepFailed) -> str:
        message = str(failure)[:1000]
        if not failure.transient:
            await self._set(model, row_id, state="failed", last_error=message)
            log.error("delivery.failed", table=table, row_id=row_id, error=message)
            return "failed"

        async with self.db.session() as session:
            row = await session.get(model, row_id)
            attempts = row.attempts if row is not None else 1
        delay_s = min(self.max_backoff_s, 2**attempts)
        await self._set(model, row_id, next_attempt_at=clock.now() + timedelta(seconds=delay_s), last_error=message)
        log.warning("delivery.retry", table=table, row_id=row_id, attempts=attempts, retry_in_s=delay_s, error=message)
        return "retry"

    async def _set(self, model: type[DeliveryColumns], row_id: str, **values: Any) -> None:
        async with self.db.session() as session:
            await session.exec(update(model).where(model.id == row_id).values(**values))  # type: ignore[attr-defined]
            await session.commit()


def _single_event(steps: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Return the event of a row whose only step stores one event on the contacts service, else None."""
    if len(steps) != 1:
        return None
    [step] = steps
    is_event = step.get("call") == "contacts" and step.get("method") == "POST" and step.get("path") == "/events"
    if not is_event or step.get("params") or not isinstance(step.get("json"), dict):
        return None
    return dict(step["json"])


def _events_step(event: dict[str, Any]) -> dict[str, Any]:
    return contacts_step("POST", "/events", event)

"""The correlation id that follows one piece of work across HTTP calls and queued jobs."""

import uuid
from contextvars import ContextVar

CORRELATION_HEADER = "X-Correlation-ID"

correlation_id_var: ContextVar[str | None] = ContextVar("correlation_id", default=None)


def new_correlation_id() -> str:
    return uuid.uuid4().hex


def current_correlation_id() -> str:
    """Return the id of the work in progress, starting a new one when there is none."""
    value = correlation_id_var.get()
    if value is None:
        value = new_correlation_id()
        correlation_id_var.set(value)
    return value

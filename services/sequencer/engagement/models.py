"""Tables of message events and of the anonymous counters that keep reports right after erasure."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, UniqueConstraint
from sqlmodel import Field

from services.kit.db import UTCDateTime
from services.sequencer.db import SequencerBase


class MessageEvent(SequencerBase, table=True):  # type: ignore[call-arg]
    """One provider or tracking event about one sent message, stored once per event id.

    `type` is `delivered`, `opened`, `clicked`, `bounced`, `complained`, `unsubscribed` or another
    provider kind kept as received. Opens and clicks carry a `verdict` (`human`, `machine` for opens,
    `bot` for clicks) with the rules that decided it. The verdicts of all hits of the message are
    computed again whenever a new hit arrives, because a burst of clicks shows only across hits.
    """

    __tablename__ = "message_event"

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(max_length=128, unique=True)
    message_id: str = Field(max_length=255, index=True)
    contact_id: str = Field(index=True, max_length=64)
    type: str = Field(max_length=32)
    occurred_at: datetime = Field(sa_type=UTCDateTime)
    received_at: datetime = Field(sa_type=UTCDateTime)
    verdict: str | None = Field(default=None, max_length=16)
    reasons: list[str] = Field(default_factory=list, sa_type=JSON)
    properties: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)


class StepCounter(SequencerBase, table=True):  # type: ignore[call-arg]
    """Metrics of erased contacts' messages for one step, without anything that identifies them.

    When a contact is erased, its messages' contributions move here, and the step report adds them
    to the counts computed from the messages still held.
    """

    __tablename__ = "step_counter"
    __table_args__ = (UniqueConstraint("sequence_id", "step_id", name="uq_step_counter_sequence_step"),)

    id: int | None = Field(default=None, primary_key=True)
    sequence_id: str = Field(max_length=40)
    step_id: str = Field(max_length=64)
    sent: int = 0
    delivered: int = 0
    bounces: int = 0
    total_opens: int = 0
    unique_opens: int = 0
    machine_opens: int = 0
    total_clicks: int = 0
    unique_clicks: int = 0
    bot_clicks: int = 0
    unsubscribes: int = 0
    complaints: int = 0
    failed: int = 0
    goal_reached: int = 0
    updated_at: datetime = Field(sa_type=UTCDateTime)

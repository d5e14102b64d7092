"""The sent-message table: one row per email step of an enrolment, written before SMTP is called."""

from datetime import datetime

from sqlalchemy import Text, UniqueConstraint
from sqlmodel import Field

from services.kit.db import UTCDateTime
from services.sequencer.db import SequencerBase


class SentMessage(SequencerBase, table=True):  # type: ignore[call-arg]
    """One email of one enrolment's step, from the moment its send begins.

    The unique key (enrolment, step) makes a second run of the step find this row instead of sending
    again. `state` is the send log:

    - `sending`: recorded with its Message-ID before SMTP is called, by the worker in `claimed_by`.
    - `awaiting_reply`: recorded just before the final dot of DATA; the server may hold the message.
    - `sent` (accepted), `retrying` (temporary failure, next try at `next_attempt_at`),
      `failed_permanent` (rejected; counts as a bounce), `failed_temporary` (retries exhausted),
      `cancelled` (the contact left the sequence before a retry).

    `status` is the delivery and engagement status derived from the message events (see
    `engagement.status`), with the first instant of each kind of event.
    """

    __tablename__ = "sent_message"
    __table_args__ = (UniqueConstraint("enrolment_id", "step_id", name="uq_sent_message_enrolment_step"),)

    id: int | None = Field(default=None, primary_key=True)
    message_id: str = Field(max_length=255, unique=True)
    enrolment_id: str = Field(foreign_key="enrolment.id", index=True, max_length=40)
    step_id: str = Field(max_length=64)
    sequence_id: str = Field(index=True, max_length=40)
    version: int
    contact_id: str = Field(index=True, max_length=64)
    template_id: str = Field(max_length=100)
    recipient: str = Field(max_length=320)
    subject: str = Field(sa_type=Text)
    html: str = Field(sa_type=Text)
    text: str = Field(sa_type=Text)
    state: str = Field(default="sending", max_length=20)
    attempts: int = 0
    claimed_by: str | None = Field(default=None, max_length=64)
    next_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    smtp_code: int | None = None
    smtp_status: str | None = Field(default=None, max_length=16)
    last_error: str | None = Field(default=None, max_length=500)
    # When the send was recorded; the Date header and the frequency cap use it.
    created_at: datetime = Field(sa_type=UTCDateTime, index=True)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    failed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    status: str = Field(default="sending", max_length=20)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    opened_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    clicked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    bounced_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    complained_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    unsubscribed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)

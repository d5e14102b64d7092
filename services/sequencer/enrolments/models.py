"""Tables of enrolments, their step runs, and the heartbeats of the workers that run them."""

from datetime import datetime

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field

from services.kit.db import UTCDateTime
from services.sequencer.db import SequencerBase


class Enrolment(SequencerBase, table=True):  # type: ignore[call-arg]
    """One pass of one contact through one version of a sequence.

    `entry` counts the contact's passes through the sequence (1, 2, ...), so a re-entry is a new row
    and two triggers racing to enrol the same contact create one. `state` is `active`, `completed`
    (ran out of steps) or `exited` (goal reached, unsubscribed, bounced, ...; see `exit_reason`).
    """

    __tablename__ = "enrolment"
    __table_args__ = (UniqueConstraint("contact_id", "sequence_id", "entry", name="uq_enrolment_contact_sequence_entry"),)

    id: str = Field(primary_key=True, max_length=40)
    sequence_id: str = Field(foreign_key="sequence.id", index=True, max_length=40)
    version: int
    contact_id: str = Field(index=True, max_length=64)
    entry: int = 1
    state: str = Field(default="active", max_length=16, index=True)
    exit_reason: str | None = Field(default=None, max_length=32)
    current_step_id: str | None = Field(default=None, max_length=64)
    trigger: str = Field(max_length=200)
    enrolled_at: datetime = Field(sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)


class StepRun(SequencerBase, table=True):  # type: ignore[call-arg]
    """One step of one enrolment: when it falls due and what became of it.

    Every due step is a row here, so a lost queue job only delays a step until the next sweep.
    `state` is `scheduled`, `done`, `cancelled` (the enrolment ended first) or `failed`. `due_at`
    moves when a send is deferred or retried, and each move increments `wake_revision`, which is
    part of the queue job id.
    """

    __tablename__ = "step_run"
    __table_args__ = (
        UniqueConstraint("enrolment_id", "step_id", name="uq_step_run_enrolment_step"),
        Index("ix_step_run_state_due_at", "state", "due_at"),
        # The id names the step's queue job, so SQLite must not hand out a deleted one again.
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, primary_key=True)
    enrolment_id: str = Field(foreign_key="enrolment.id", index=True, max_length=40)
    step_id: str = Field(max_length=64)
    kind: str = Field(max_length=16)
    state: str = Field(default="scheduled", max_length=16)
    # When the step began: the instant the step before it was due, or the enrolment time.
    started_at: datetime = Field(sa_type=UTCDateTime)
    due_at: datetime = Field(sa_type=UTCDateTime)
    wake_revision: int = 0
    outcome: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class WorkerHeartbeat(SequencerBase, table=True):  # type: ignore[call-arg]
    """The last sign of life of one worker process, in wall-clock time.

    An email a worker is sending carries that worker's id. When the heartbeat grows stale the worker
    is taken as dead and another one takes the email over.
    """

    __tablename__ = "worker_heartbeat"

    worker_id: str = Field(primary_key=True, max_length=64)
    beat_at: datetime = Field(sa_type=UTCDateTime)
    started_at: datetime = Field(sa_type=UTCDateTime)

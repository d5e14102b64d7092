"""Every table of the sequencer service, imported so its metadata is complete for migrations."""

from services.sequencer.db import OutboxMessage, ProcessedEvent, SequencerBase
from services.sequencer.engagement.models import MessageEvent, StepCounter
from services.sequencer.enrolments.models import Enrolment, StepRun, WorkerHeartbeat
from services.sequencer.facts.models import ContactFact, ErasedContact
from services.sequencer.sending.models import SentMessage
from services.sequencer.sequences.models import Sequence, SequenceVersion
from services.sequencer.templates.models import Template

metadata = SequencerBase.metadata

__all__ = [
    "ContactFact",
    "Enrolment",
    "ErasedContact",
    "MessageEvent",
    "OutboxMessage",
    "ProcessedEvent",
    "SentMessage",
    "Sequence",
    "SequenceVersion",
    "SequencerBase",
    "StepCounter",
    "StepRun",
    "Template",
    "WorkerHeartbeat",
    "metadata",
]

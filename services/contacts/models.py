"""Every table of the contacts service, imported so its metadata is complete for migrations."""

from services.contacts.attributes.models import AttributeDefinitionRow
from services.contacts.consent.models import ConsentChange, ConsentState
from services.contacts.db import ContactsBase, OutboxMessage, ProcessedEvent
from services.contacts.imports.models import ImportJob
from services.contacts.people.models import Company, Contact
from services.contacts.privacy.models import ContactTombstone
from services.contacts.segments.models import Segment, SegmentMembership
from services.contacts.stages.models import StageChange, StageDefinitionVersion
from services.contacts.timeline.models import TimelineEvent

metadata = ContactsBase.metadata

__all__ = [
    "AttributeDefinitionRow",
    "Company",
    "ConsentChange",
    "ConsentState",
    "Contact",
    "ContactTombstone",
    "ContactsBase",
    "ImportJob",
    "OutboxMessage",
    "ProcessedEvent",
    "Segment",
    "SegmentMembership",
    "StageChange",
    "StageDefinitionVersion",
    "TimelineEvent",
    "metadata",
]

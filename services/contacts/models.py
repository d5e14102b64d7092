"""Every table of the contacts service, imported so its metadata is complete for migrations."""

from services.contacts.db import ContactsBase, OutboxMessage, ProcessedEvent
from services.contacts.people.models import Contact
from services.contacts.timeline.models import TimelineEvent

metadata = ContactsBase.metadata

__all__ = ["Contact", "ContactsBase", "OutboxMessage", "ProcessedEvent", "TimelineEvent", "metadata"]

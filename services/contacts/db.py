"""The contacts service's table registry and its outbox and processed-event tables."""

from services.kit.db import service_base
from services.kit.outbox import OutboxColumns, ProcessedEventColumns

ContactsBase = service_base("contacts")


class OutboxMessage(ContactsBase, OutboxColumns, table=True):  # type: ignore[call-arg]
    __tablename__ = "outbox"


class ProcessedEvent(ContactsBase, ProcessedEventColumns, table=True):  # type: ignore[call-arg]
    __tablename__ = "processed_event"

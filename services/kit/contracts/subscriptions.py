"""Which topics each service consumes; the outbox relay routes events by this table."""

SUBSCRIPTIONS: dict[str, frozenset[str]] = {
    "contacts": frozenset({"score.changed", "score.mql_reached", "email.engagement"}),
    "scoring": frozenset({"contact.event_recorded", "contact.changed", "contact.erased", "stage.changed"}),
    "sequencer": frozenset(
        {
            "contact.event_recorded",
            "contact.changed",
            "contact.erased",
            "stage.changed",
            "segment.entered",
            "segment.left",
            "consent.changed",
            "score.changed",
        }
    ),
    "gateway": frozenset(),
}


def consumers_of(topic: str, *, producer: str) -> list[str]:
    """Return the services that consume `topic`, never the producer itself."""
    return sorted(
        service for service, topics in SUBSCRIPTIONS.items() if topic in topics and service != producer
    )

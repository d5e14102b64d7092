"""One stored provider event (or SNS subscription request) per (provider, provider_event_id)."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, UniqueConstraint
from sqlmodel import Field

from services.gateway.db import GatewayBase
from services.gateway.delivery.models import DeliveryColumns
from services.gateway.webhooks.events import (
    MAX_EMAIL_LENGTH,
    MAX_PROVIDER_EVENT_ID_LENGTH,
    MAX_PROVIDER_MESSAGE_ID_LENGTH,
)
from services.kit.db import UTCDateTime


class WebhookReceipt(GatewayBase, DeliveryColumns, table=True):  # type: ignore[call-arg]
    __tablename__ = "webhook_receipt"
    __table_args__ = (
        UniqueConstraint("provider", "provider_event_id", name="uq_webhook_receipt_provider_event"),
    )

    # Derived from provider and provider_event_id, and used as the timeline event id, so a repeated
    # delivery to contacts stores one event.
    id: str = Field(primary_key=True, max_length=64)
    provider: str = Field(max_length=16)
    # The webhook library rejects events whose values do not fit these columns.
    provider_event_id: str = Field(max_length=MAX_PROVIDER_EVENT_ID_LENGTH)
    # `event` for a mapped provider event, `sns_subscription` for a subscription to confirm,
    # `invalid_event` for a signed event that could not be mapped.
    kind: str = Field(max_length=32)
    event_type: str | None = Field(default=None, max_length=32)
    email: str | None = Field(default=None, max_length=MAX_EMAIL_LENGTH)
    provider_message_id: str | None = Field(default=None, max_length=MAX_PROVIDER_MESSAGE_ID_LENGTH)
    occurred_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    received_at: datetime = Field(sa_type=UTCDateTime)
    # The provider's own object for this event, as parsed.
    raw: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)

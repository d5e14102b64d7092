"""One open, click or unsubscribe request, kept until the contacts service has it."""

from datetime import datetime

from sqlalchemy import JSON
from sqlmodel import Field

from services.gateway.db import GatewayBase
from services.gateway.delivery.models import DeliveryColumns
from services.kit.db import UTCDateTime


class TrackingHit(GatewayBase, DeliveryColumns, table=True):  # type: ignore[call-arg]
    __tablename__ = "tracking_hit"

    # Also the timeline event id. Unsubscribes use one fixed id per message and contact, so a
    # repeated POST stores one row.
    id: str = Field(primary_key=True, max_length=64)
    # `open`, `click` or `unsubscribe`.
    kind: str = Field(max_length=16)
    message_id: str = Field(max_length=200)
    contact_id: str = Field(max_length=200)
    occurred_at: datetime = Field(sa_type=UTCDateTime)
    user_agent: str | None = Field(default=None, max_length=1000)
    ip: str | None = Field(default=None, max_length=64)
    url: str | None = Field(default=None, max_length=2048)
    # `human`, `machine` (opens) or `bot` (clicks), from the engagement classifier.
    verdict: str = Field(max_length=16)
    reasons: list[str] = Field(default_factory=list, sa_type=JSON)

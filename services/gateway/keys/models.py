"""API keys: only a hash of each key is stored; the key itself is shown once at creation."""

from datetime import datetime

from sqlalchemy import JSON
from sqlmodel import Field

from services.gateway.db import GatewayBase
from services.kit.db import UTCDateTime


class ApiKey(GatewayBase, table=True):  # type: ignore[call-arg]
    __tablename__ = "api_key"

    id: str = Field(primary_key=True, max_length=32)
    name: str = Field(max_length=200)
    # The public part of the key, used to find the row before comparing hashes.
    prefix: str = Field(max_length=16, unique=True)
    key_hash: str = Field(max_length=64)
    scopes: list[str] = Field(default_factory=list, sa_type=JSON)
    # Requests per rate-limit window for this key; None uses GATEWAY_RATE_LIMIT_REQUESTS, 0 is unlimited.
    rate_limit: int | None = Field(default=None, ge=0)
    created_at: datetime = Field(sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)

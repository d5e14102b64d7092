"""Stored outcomes of POST requests that carried an Idempotency-Key, per API key."""

from datetime import datetime

from sqlalchemy import JSON, LargeBinary, UniqueConstraint
from sqlmodel import Field

from services.gateway.db import GatewayBase
from services.kit.db import UTCDateTime


class IdempotencyRecord(GatewayBase, table=True):  # type: ignore[call-arg]
    __tablename__ = "idempotency_record"
    __table_args__ = (UniqueConstraint("api_key_id", "idempotency_key", name="uq_idempotency_record_key"),)

    id: int | None = Field(default=None, primary_key=True)
    api_key_id: str = Field(max_length=32)
    idempotency_key: str = Field(max_length=255)
    # SHA-256 of method, path, query and body: the same key with another request is an error.
    fingerprint: str = Field(max_length=64)
    # `in_progress` while the first request runs, `completed` once its response is stored.
    state: str = Field(max_length=16)
    # A request still `in_progress` after this instant is taken as abandoned (its process died).
    locked_until: datetime = Field(sa_type=UTCDateTime)
    created_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)
    response_status: int | None = None
    response_headers: dict[str, str] | None = Field(default=None, sa_type=JSON)
    response_body: bytes | None = Field(default=None, sa_type=LargeBinary)

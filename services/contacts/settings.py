"""Settings of the contacts service (environment variables prefixed `CONTACTS_`)."""

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.kit.settings import ServiceSettings


class ContactsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CONTACTS_", extra="ignore")

    service_name: str = "contacts"

    # Consent of a contact that nobody has set it for yet (no subscription change recorded).
    default_consent: Literal["subscribed", "unsubscribed"] = "subscribed"
    # Soft bounces suppress the address once this many fall within the window.
    soft_bounce_limit: int = Field(5, ge=1)
    soft_bounce_window_days: int = Field(30, ge=1)
    # Events later than this many seconds after the platform clock are rejected, so a client clock far
    # ahead cannot put events (and consent changes) into the future.
    max_event_future_s: int = Field(3600, ge=0)
    # Events stored per transaction by POST /events/batch.
    event_batch_chunk: int = Field(250, ge=1, le=1000)
    # Rows committed per transaction by an import job.
    import_chunk_rows: int = Field(500, ge=1)
    # Largest CSV file an import accepts, in bytes.
    import_max_bytes: int = Field(200 * 1024 * 1024, ge=1024)
    # Longest time, in seconds of platform time, between two re-evaluations of a segment with a
    # rolling window (it is re-evaluated sooner when an event is due to leave the window).
    segment_window_recheck_s: int = Field(900, ge=1)

    @property
    def imports_dir(self) -> Path:
        """The folder where uploaded CSV files wait for their import job (shared by API and worker)."""
        return (self.data_dir / "imports").resolve()

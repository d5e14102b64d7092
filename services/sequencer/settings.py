"""Settings of the sequencer service (environment variables prefixed `SEQUENCER_`)."""

from datetime import timedelta
from urllib.parse import urlsplit

from pydantic_settings import SettingsConfigDict

from services.kit.settings import ServiceSettings
from services.sequencer.schedule.cap import FrequencyCap
from services.sequencer.sending.links import secure_or_local
from services.sequencer.sending.outcome import RetryPolicy


class SequencerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SEQUENCER_", extra="ignore")

    service_name: str = "sequencer"

    # Outgoing mail: the local sink of `nurture up` by default, a relay or provider in production.
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_timeout_s: float = 30.0
    # Open SMTP connections a worker keeps and reuses; also the number of emails it sends at once.
    smtp_connections: int = 8
    from_address: str = "Nurture <hello@nurture.example>"
    message_id_domain: str = "nurture.example"

    # Temporary SMTP failures are retried with exponential backoff; then the send is given up.
    smtp_max_attempts: int = 5
    smtp_retry_base_s: float = 300.0
    smtp_retry_factor: float = 3.0
    smtp_retry_max_s: float = 21600.0

    # At most this many marketing emails per contact in any rolling period, across all sequences.
    # A send over the cap waits; zero turns the cap off.
    frequency_cap_max_sends: int = 3
    frequency_cap_period_hours: float = 24.0

    # A worker that has not refreshed its heartbeat for this long is taken as dead, and the emails it
    # was sending are taken over by another worker.
    worker_stale_after_s: float = 10.0
    # A step run found this much later than its due time is planned again from now, so a worker that
    # was down does not send inside quiet hours or outside a send window.
    late_send_grace_s: float = 900.0
    # Due step runs one sweep takes from the database.
    sweep_batch_size: int = 200

    def model_post_init(self, __context: object) -> None:
        super().model_post_init(__context)
        scheme = urlsplit(self.public_base_url).scheme
        if self.environment == "production" and scheme != "https":
            raise ValueError("NURTURE_PUBLIC_BASE_URL must be an https URL in production (RFC 8058 unsubscribe)")
        if not secure_or_local(self.public_base_url):
            raise ValueError(
                "NURTURE_PUBLIC_BASE_URL must be https, or plain http to a loopback host for local development; "
                f"got {self.public_base_url!r}"
            )
        if self.smtp_connections < 1:
            raise ValueError("SEQUENCER_SMTP_CONNECTIONS must be at least 1")

    def retry_policy(self) -> RetryPolicy:
        """Return the backoff for temporary SMTP failures."""
        return RetryPolicy(
            max_attempts=self.smtp_max_attempts,
            base_delay=timedelta(seconds=self.smtp_retry_base_s),
            factor=self.smtp_retry_factor,
            max_delay=timedelta(seconds=self.smtp_retry_max_s),
        )

    def frequency_cap(self) -> FrequencyCap | None:
        """Return the cross-sequence frequency cap, or None when it is off."""
        if self.frequency_cap_max_sends <= 0:
            return None
        return FrequencyCap(self.frequency_cap_max_sends, timedelta(hours=self.frequency_cap_period_hours))

    def tracking_secret_list(self) -> list[str]:
        """Return the tracking secrets; the first one signs."""
        return [secret.strip() for secret in self.tracking_secrets.split(",") if secret.strip()]

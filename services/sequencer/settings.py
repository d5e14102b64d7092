"""Settings of the sequencer service (environment variables prefixed `SEQUENCER_`)."""

from pydantic_settings import SettingsConfigDict

from services.kit.settings import ServiceSettings


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
    from_address: str = "Nurture <hello@nurture.example>"
    message_id_domain: str = "nurture.example"

"""Settings every service shares, read from environment variables only.

Each service subclasses `ServiceSettings` with its own prefix (`CONTACTS_`, `SCORING_`, ...). The
platform-wide values (Redis, the clock, the service addresses) keep one unprefixed name, so one
environment file configures all four services alike.
"""

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICE_NAMES = ("contacts", "scoring", "sequencer", "gateway")

# Shortest internal token or tracking secret accepted in production: 32 characters of a random token
# carry well over 128 bits.
MIN_SECRET_LENGTH = 32

DEFAULT_PORTS = {"gateway": 8000, "contacts": 8001, "scoring": 8002, "sequencer": 8003}


def _shared(name: str) -> AliasChoices:
    return AliasChoices(name)


class ServiceSettings(BaseSettings):
    """Configuration of one service; subclasses set `service_name` and the env prefix."""

    model_config = SettingsConfigDict(extra="ignore", env_file=None)

    service_name: str = "service"

    # This service's own process and database.
    host: str = "127.0.0.1"
    port: int = 0
    database_url: str = ""
    database_pool_size: int = 10

    # Platform-wide values, one name for every service.
    environment: Literal["development", "test", "production"] = Field(
        "development", validation_alias=_shared("NURTURE_ENVIRONMENT")
    )
    data_dir: Path = Field(Path("data"), validation_alias=_shared("NURTURE_DATA_DIR"))
    redis_url: str = Field("redis://127.0.0.1:6379/0", validation_alias=_shared("REDIS_URL"))
    namespace: str = Field("nurture", validation_alias=_shared("NURTURE_NAMESPACE"))
    clock_file: Path | None = Field(None, validation_alias=_shared("NURTURE_CLOCK_FILE"))
    log_format: Literal["console", "json"] = Field("console", validation_alias=_shared("NURTURE_LOG_FORMAT"))
    log_level: str = Field("INFO", validation_alias=_shared("NURTURE_LOG_LEVEL"))
    internal_token: str = Field(
        "development-internal-token", validation_alias=_shared("NURTURE_INTERNAL_TOKEN")
    )
    # Signs open, click and unsubscribe tokens; the sequencer signs, the gateway verifies.
    # Several comma-separated secrets allow rotation: the first signs, any verifies.
    tracking_secrets: str = Field(
        "development-tracking-secret-0123456789abcdef", validation_alias=_shared("NURTURE_TRACKING_SECRETS")
    )
    # The gateway's address as recipients' mail clients reach it, for tracking and unsubscribe links.
    public_base_url: str = Field("http://127.0.0.1:8000", validation_alias=_shared("NURTURE_PUBLIC_BASE_URL"))

    contacts_url: str = Field("http://127.0.0.1:8001", validation_alias=_shared("CONTACTS_URL"))
    scoring_url: str = Field("http://127.0.0.1:8002", validation_alias=_shared("SCORING_URL"))
    sequencer_url: str = Field("http://127.0.0.1:8003", validation_alias=_shared("SEQUENCER_URL"))
    gateway_url: str = Field("http://127.0.0.1:8000", validation_alias=_shared("GATEWAY_URL"))

    # How often the worker sweeps for unpublished outbox rows and due work whose job is missing. Zero
    # would run the sweeps back to back, so 10 ms is the minimum.
    sweep_interval_ms: int = Field(500, ge=10, le=60_000, validation_alias=_shared("NURTURE_SWEEP_INTERVAL_MS"))
    # The shortest time between two relay passes of a worker. A worker's commits come in streams (a
    # consumer's batches, a sequence's sends), and each pass sends one job per consumer.
    relay_linger_ms: int = Field(100, ge=0, le=5000, validation_alias=_shared("NURTURE_RELAY_LINGER_MS"))
    http_timeout_s: float = Field(10.0, validation_alias=_shared("NURTURE_HTTP_TIMEOUT_S"))

    def model_post_init(self, __context: object) -> None:
        if not self.port:
            self.port = DEFAULT_PORTS.get(self.service_name, 8080)
        if not self.database_url:
            path = (self.data_dir / f"{self.service_name}.db").resolve()
            self.database_url = f"sqlite+aiosqlite:///{path}"
        if self.environment == "production":
            self._check_production_secrets()

    def _check_production_secrets(self) -> None:
        if self.internal_token == "development-internal-token" or len(self.internal_token) < MIN_SECRET_LENGTH:
            raise ValueError(
                f"NURTURE_INTERNAL_TOKEN must be set to a secret of at least {MIN_SECRET_LENGTH} characters in production"
            )
        for secret in self.tracking_secrets.split(","):
            if secret.startswith("development-") or len(secret.strip()) < MIN_SECRET_LENGTH:
                raise ValueError(
                    f"NURTURE_TRACKING_SECRETS must be set to secrets of at least {MIN_SECRET_LENGTH} characters in production"
                )

    def url_of(self, service: str) -> str:
        """Return the base URL of another service on the internal network."""
        return {
            "contacts": self.contacts_url,
            "scoring": self.scoring_url,
            "sequencer": self.sequencer_url,
            "gateway": self.gateway_url,
        }[service]

"""Settings of the gateway (environment variables prefixed `GATEWAY_`)."""

from pydantic_settings import SettingsConfigDict

from services.kit.settings import ServiceSettings


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    service_name: str = "gateway"

    # Largest request body accepted, in bytes (CSV imports have their own limit).
    max_body_bytes: int = 1_048_576

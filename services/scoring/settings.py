"""Settings of the scoring service (environment variables prefixed `SCORING_`)."""

from pydantic_settings import SettingsConfigDict

from services.kit.settings import ServiceSettings


class ScoringSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SCORING_", extra="ignore")

    service_name: str = "scoring"

"""Settings of the scoring service (environment variables prefixed `SCORING_`)."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.kit.settings import ServiceSettings


class ScoringSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SCORING_", extra="ignore")

    service_name: str = "scoring"

    # Contacts per transaction of a rescore or threshold backfill; each chunk commits with its progress.
    job_chunk_size: int = Field(500, ge=1, le=10_000)
    # Simulation and calibration read at most this many contacts, and say so when they stop short.
    analysis_max_contacts: int = Field(200_000, ge=1)
    # How often, in seconds of platform time, an MQL of a model that demotes is re-checked for decay.
    decay_check_interval_s: int = Field(3600, ge=1)
    # Contacts re-checked for decay per sweep run.
    decay_check_batch: int = Field(200, ge=1)
    # A queued or running job not updated for this long has its arq job enqueued again.
    job_stale_after_s: int = Field(120, ge=1)

"""Settings of the contacts service (environment variables prefixed `CONTACTS_`)."""

from pydantic_settings import SettingsConfigDict

from services.kit.settings import ServiceSettings


class ContactsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CONTACTS_", extra="ignore")

    service_name: str = "contacts"

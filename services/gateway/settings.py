"""Settings of the gateway (environment variables prefixed `GATEWAY_`).

List settings (webhook keys, credentials, topic ARNs) take comma-separated values or a JSON array.
Use the JSON form when a value itself contains a comma.
"""

import json
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from services.gateway.webhooks import (
    MailgunSettings,
    PostmarkCredentials,
    PostmarkSettings,
    SendGridSettings,
    SesSettings,
    WebhookConfig,
)
from services.kit.settings import ServiceSettings

MIB = 1024 * 1024

TextList = Annotated[tuple[str, ...], NoDecode]
SecretList = Annotated[tuple[SecretStr, ...], NoDecode]


def split_list(value: Any) -> Any:
    """Read a list setting given as a JSON array or as comma-separated text."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        parsed = json.loads(text)
        if not isinstance(parsed, list) or not all(isinstance(item, str) for item in parsed):
            raise ValueError("expected a JSON array of strings")
        return tuple(parsed)
    return tuple(part.strip() for part in text.split(",") if part.strip())


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    service_name: str = "gateway"

    # Largest request body accepted, in bytes; CSV uploads under /v1/imports and provider
    # webhooks have their own limits below.
    max_body_bytes: int = Field(1 * MIB, gt=0)
    max_import_bytes: int = Field(50 * MIB, gt=0)

    # Requests each API key may send per fixed window; a key's own `rate_limit` overrides the
    # count, and 0 turns rate limiting off.
    rate_limit_requests: int = Field(600, ge=0)
    rate_limit_window_s: int = Field(60, gt=0)

    # How long an Idempotency-Key is remembered, and after how long a request that claimed a key
    # but never finished (its process died) is taken as abandoned.
    idempotency_ttl_s: int = Field(86_400, gt=0)
    idempotency_lock_s: int = Field(60, gt=0)

    # Maximum pause between two attempts to deliver a receipt or tracking hit to contacts.
    delivery_max_backoff_s: int = Field(300, gt=0)

    # Provider webhooks. A provider without a key, credential or topic is disabled (404).
    webhook_max_body_bytes: int = Field(5 * MIB, gt=0)
    webhook_certificate_timeout_s: float = Field(5.0, gt=0)
    webhook_sendgrid_verification_keys: TextList = ()
    webhook_sendgrid_max_age_s: int = Field(25 * 3600, gt=0)
    webhook_sendgrid_max_future_s: int = Field(300, gt=0)
    webhook_mailgun_signing_keys: SecretList = ()
    webhook_mailgun_verify_parent_signature: bool = False
    webhook_mailgun_max_age_s: int = Field(12 * 3600, gt=0)
    webhook_mailgun_max_future_s: int = Field(300, gt=0)
    webhook_mailgun_token_ttl_s: int = Field(24 * 3600, gt=0)
    # Each entry is `username:password`; the username ends at the first colon.
    webhook_postmark_credentials: SecretList = ()
    webhook_postmark_shared_header_name: str = "X-Webhook-Secret"
    webhook_postmark_shared_header_values: SecretList = ()
    webhook_ses_allowed_topic_arns: TextList = ()
    webhook_ses_max_age_s: int = Field(24 * 3600, gt=0)
    webhook_ses_max_future_s: int = Field(300, gt=0)

    @field_validator(
        "webhook_sendgrid_verification_keys",
        "webhook_mailgun_signing_keys",
        "webhook_postmark_credentials",
        "webhook_postmark_shared_header_values",
        "webhook_ses_allowed_topic_arns",
        mode="before",
    )
    @classmethod
    def _split(cls, value: Any) -> Any:
        return split_list(value)

    @model_validator(mode="after")
    def _check_webhooks(self) -> "GatewaySettings":
        # Build once so a malformed key or ARN stops the service at start, not at the first webhook.
        self.webhook_config()
        return self

    def tracking_secret_list(self) -> list[str]:
        return [secret.strip() for secret in self.tracking_secrets.split(",") if secret.strip()]

    def webhook_config(self) -> WebhookConfig:
        """Return the webhook library's configuration; providers without secrets stay disabled."""
        return WebhookConfig(
            sendgrid=self._sendgrid(),
            mailgun=self._mailgun(),
            postmark=self._postmark(),
            ses=self._ses(),
            max_body_bytes=self.webhook_max_body_bytes,
        )

    def _sendgrid(self) -> SendGridSettings | None:
        if not self.webhook_sendgrid_verification_keys:
            return None
        return SendGridSettings(
            verification_keys=self.webhook_sendgrid_verification_keys,
            max_age_s=self.webhook_sendgrid_max_age_s,
            max_future_s=self.webhook_sendgrid_max_future_s,
        )

    def _mailgun(self) -> MailgunSettings | None:
        if not self.webhook_mailgun_signing_keys:
            return None
        return MailgunSettings(
            signing_keys=self.webhook_mailgun_signing_keys,
            verify_parent_signature=self.webhook_mailgun_verify_parent_signature,
            max_age_s=self.webhook_mailgun_max_age_s,
            max_future_s=self.webhook_mailgun_max_future_s,
            token_ttl_s=self.webhook_mailgun_token_ttl_s,
        )

    def _postmark(self) -> PostmarkSettings | None:
        if not self.webhook_postmark_credentials:
            return None
        pairs = []
        for position, entry in enumerate(self.webhook_postmark_credentials):
            username, separator, password = entry.get_secret_value().partition(":")
            if not separator or not username or not password:
                raise ValueError(
                    f"GATEWAY_WEBHOOK_POSTMARK_CREDENTIALS entry #{position} must be username:password"
                )
            pairs.append(PostmarkCredentials(username=username, password=password))
        return PostmarkSettings(
            credentials=tuple(pairs),
            shared_header_name=self.webhook_postmark_shared_header_name,
            shared_header_values=self.webhook_postmark_shared_header_values,
        )

    def _ses(self) -> SesSettings | None:
        if not self.webhook_ses_allowed_topic_arns:
            return None
        return SesSettings(
            allowed_topic_arns=self.webhook_ses_allowed_topic_arns,
            max_age_s=self.webhook_ses_max_age_s,
            max_future_s=self.webhook_ses_max_future_s,
        )

"""Gateway settings from GATEWAY_* environment variables, webhook secrets included."""

import json

import pytest
from pydantic import ValidationError

from services.gateway.settings import GatewaySettings

from .webhooks.conftest import MANIFEST, mailgun_signing_key, postmark_credentials, sendgrid_key_text

TOPIC = MANIFEST["providers"]["ses"]["allowed_topic_arns"][0]


def test_providers_without_secrets_are_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SENDGRID_VERIFICATION_KEYS", "MAILGUN_SIGNING_KEYS", "POSTMARK_CREDENTIALS", "SES_ALLOWED_TOPIC_ARNS"):
        monkeypatch.delenv(f"GATEWAY_WEBHOOK_{name}", raising=False)

    config = GatewaySettings().webhook_config()

    assert (config.sendgrid, config.mailgun, config.postmark, config.ses) == (None, None, None, None)
    assert config.max_body_bytes == 5 * 1024 * 1024


def test_webhook_secrets_come_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    credentials = postmark_credentials()
    monkeypatch.setenv("GATEWAY_WEBHOOK_SENDGRID_VERIFICATION_KEYS", sendgrid_key_text().strip())
    monkeypatch.setenv("GATEWAY_WEBHOOK_SENDGRID_MAX_AGE_S", "3600")
    monkeypatch.setenv("GATEWAY_WEBHOOK_MAILGUN_SIGNING_KEYS", f"old-key,{mailgun_signing_key()}")
    monkeypatch.setenv("GATEWAY_WEBHOOK_MAILGUN_TOKEN_TTL_S", "7200")
    monkeypatch.setenv(
        "GATEWAY_WEBHOOK_POSTMARK_CREDENTIALS",
        json.dumps([f"{credentials['basic_auth_username']}:{credentials['basic_auth_password']}", "other:pass,word"]),
    )
    monkeypatch.setenv("GATEWAY_WEBHOOK_POSTMARK_SHARED_HEADER_VALUES", credentials["custom_header_value"])
    monkeypatch.setenv("GATEWAY_WEBHOOK_SES_ALLOWED_TOPIC_ARNS", f" {TOPIC} , ")
    monkeypatch.setenv("GATEWAY_WEBHOOK_MAX_BODY_BYTES", "1000")

    config = GatewaySettings().webhook_config()

    assert config.sendgrid is not None
    assert config.sendgrid.max_age_s == 3600
    assert config.mailgun is not None
    assert [key.get_secret_value() for key in config.mailgun.signing_keys] == ["old-key", mailgun_signing_key()]
    assert config.mailgun.token_ttl_s == 7200
    assert config.postmark is not None
    assert [pair.username for pair in config.postmark.credentials] == [credentials["basic_auth_username"], "other"]
    assert config.postmark.credentials[1].password.get_secret_value() == "pass,word"
    assert [value.get_secret_value() for value in config.postmark.shared_header_values] == [credentials["custom_header_value"]]
    assert config.ses is not None
    assert config.ses.allowed_topic_arns == (TOPIC,)
    assert config.max_body_bytes == 1000


def test_malformed_topic_stops_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_WEBHOOK_SES_ALLOWED_TOPIC_ARNS", "lead-nurture-ses-events")

    with pytest.raises(ValidationError, match="not an SNS topic ARN"):
        GatewaySettings()


def test_postmark_entry_needs_a_colon(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_WEBHOOK_POSTMARK_CREDENTIALS", "just-a-username")

    with pytest.raises(ValidationError, match="GATEWAY_WEBHOOK_POSTMARK_CREDENTIALS entry #0 must be username:password"):
        GatewaySettings()


def test_bad_sendgrid_key_stops_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_WEBHOOK_SENDGRID_VERIFICATION_KEYS", "bm90IGEga2V5")

    with pytest.raises(ValidationError, match="verification key #0"):
        GatewaySettings()


def test_limits_come_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_RATE_LIMIT_REQUESTS", "5")
    monkeypatch.setenv("GATEWAY_RATE_LIMIT_WINDOW_S", "10")
    monkeypatch.setenv("GATEWAY_IDEMPOTENCY_TTL_S", "60")
    monkeypatch.setenv("GATEWAY_MAX_IMPORT_BYTES", "2048")

    settings = GatewaySettings()

    assert (settings.rate_limit_requests, settings.rate_limit_window_s) == (5, 10)
    assert settings.idempotency_ttl_s == 60
    assert settings.max_import_bytes == 2048

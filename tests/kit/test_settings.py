"""Settings come from environment variables, one prefix per service."""

import pytest
from pydantic import ValidationError

from services.contacts.settings import ContactsSettings
from services.gateway.settings import GatewaySettings


def test_prefix_selects_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTACTS_PORT", "9101")
    monkeypatch.setenv("GATEWAY_PORT", "9100")

    assert ContactsSettings().port == 9101
    assert GatewaySettings().port == 9100


def test_shared_values_have_one_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6399/2")

    assert ContactsSettings().redis_url == GatewaySettings().redis_url == "redis://127.0.0.1:6399/2"


def test_sqlite_default_under_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.delenv("CONTACTS_DATABASE_URL")
    monkeypatch.setenv("NURTURE_DATA_DIR", str(tmp_path))

    assert ContactsSettings().database_url == f"sqlite+aiosqlite:///{tmp_path}/contacts.db"


@pytest.mark.parametrize("value", ["0", "-5", "9"])
def test_sweep_interval_too_short_rejected(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    # An interval of zero ran every periodic task of the worker back to back.
    monkeypatch.setenv("NURTURE_SWEEP_INTERVAL_MS", value)

    with pytest.raises(ValidationError, match="NURTURE_SWEEP_INTERVAL_MS"):
        ContactsSettings()


def test_production_rejects_placeholder_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NURTURE_ENVIRONMENT", "production")
    monkeypatch.delenv("NURTURE_INTERNAL_TOKEN", raising=False)

    with pytest.raises(ValidationError, match="NURTURE_INTERNAL_TOKEN"):
        ContactsSettings()


def test_production_rejects_placeholder_tracking_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NURTURE_ENVIRONMENT", "production")
    monkeypatch.setenv("NURTURE_INTERNAL_TOKEN", "a-real-secret-value-of-enough-length-0123")

    with pytest.raises(ValidationError, match="NURTURE_TRACKING_SECRETS"):
        ContactsSettings()


def test_production_rejects_short_internal_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NURTURE_ENVIRONMENT", "production")
    monkeypatch.setenv("NURTURE_INTERNAL_TOKEN", "")

    with pytest.raises(ValidationError, match="at least 32 characters"):
        ContactsSettings()

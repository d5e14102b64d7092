"""`nurture keys`: create shows the key once, list never shows it, revoke takes effect."""

import asyncio

from typer.testing import CliRunner, Result

from services.cli.keys import is_valid
from services.cli.main import app
from tests.support.threads import in_thread


def _invoke(*arguments: str) -> Result:
    return in_thread(lambda: CliRunner().invoke(app, list(arguments)))


def test_create_list_revoke() -> None:
    created = _invoke("keys", "create", "--name", "crm-sync", "--scopes", "contacts:read")
    key = created.stdout.strip().splitlines()[-1]
    listed = _invoke("keys", "list")
    prefix = key.split("_")[1]
    revoked = _invoke("keys", "revoke", prefix)

    assert created.exit_code == 0, created.output
    assert key.startswith("nk_")
    assert "crm-sync" in listed.output
    assert key not in listed.output
    assert revoked.exit_code == 0, revoked.output


def test_revoked_key_no_longer_valid() -> None:
    key = _invoke("keys", "create", "--name", "temp", "--scopes", "*").stdout.strip().splitlines()[-1]
    assert in_thread(lambda: asyncio.run(is_valid(key)))

    _invoke("keys", "revoke", key.split("_")[1])

    assert not in_thread(lambda: asyncio.run(is_valid(key)))


def test_unknown_scope_fails() -> None:
    result = _invoke("keys", "create", "--name", "bad", "--scopes", "everything")

    assert result.exit_code == 2
    assert "unknown scope 'everything'" in result.output

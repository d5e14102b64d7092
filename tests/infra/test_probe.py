"""nurture-probe, the health check the image runs for Compose and Kubernetes, against real backends."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
import redis

from services.cli.supervisor import free_port
from services.kit.migrations import upgrade
from services.kit.queue import queue_name
from tests.infra.support import PROBE_SCRIPT, REPOSITORY, load_probe_module
from tests.support.threads import in_thread

if TYPE_CHECKING:
    from tests.support.environment import TestEnvironment

probe = load_probe_module()


def _sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def test_migrations_current_after_upgrade() -> None:
    assert in_thread(lambda: probe.check_migrations("contacts", 0)) == probe.HEALTHY


def test_migrations_behind_on_empty_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SCORING_DATABASE_URL", _sqlite_url(tmp_path / "empty.db"))

    assert in_thread(lambda: probe.check_migrations("scoring", 0)) == probe.UNHEALTHY
    assert "scoring database is behind" in capsys.readouterr().err


def test_migrations_wait_until_upgraded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = _sqlite_url(tmp_path / "late.db")
    monkeypatch.setenv("GATEWAY_DATABASE_URL", url)
    migration = threading.Timer(1.0, lambda: upgrade("gateway", url))

    migration.start()
    started = time.monotonic()
    try:
        result = in_thread(lambda: probe.check_migrations("gateway", 60))
    finally:
        migration.join()

    assert result == probe.HEALTHY
    assert time.monotonic() - started >= 1.0


def test_migrations_ahead_still_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlite3

    path = tmp_path / "newer.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
        connection.execute("INSERT INTO alembic_version VALUES ('f00dfeedbeef')")
    monkeypatch.setenv("SEQUENCER_DATABASE_URL", _sqlite_url(path))

    assert in_thread(lambda: probe.check_migrations("sequencer", 0)) == probe.HEALTHY
    assert "newer than this image's" in capsys.readouterr().err


def test_migration_states() -> None:
    assert probe.migration_state({"b"}, {"b"}, {"a", "b"}) == "current"
    assert probe.migration_state({"a"}, {"b"}, {"a", "b"}) == "behind"
    assert probe.migration_state(set(), {"b"}, {"a", "b"}) == "behind"
    assert probe.migration_state({"c"}, {"b"}, {"a", "b"}) == "ahead"


@pytest.fixture
def heartbeat(environment: TestEnvironment) -> Iterator[tuple[redis.Redis, str]]:
    client = redis.Redis.from_url(environment.redis_url)
    key = f"{queue_name(environment.namespace, 'sequencer')}:health-check"
    yield client, key
    client.delete(key)
    client.close()


def test_worker_healthy_with_heartbeat(heartbeat: tuple[redis.Redis, str]) -> None:
    client, key = heartbeat

    client.delete(key)
    assert in_thread(lambda: probe.check_worker("sequencer")) == probe.UNHEALTHY

    client.set(key, b"Dec-04 12:00:00 j_complete=0 j_failed=0 j_retried=0 j_ongoing=0 queued=0", px=11_000)
    assert in_thread(lambda: probe.check_worker("sequencer")) == probe.HEALTHY


def _start_api(port: int, extra: dict[str, str]) -> subprocess.Popen[bytes]:
    environment = {**os.environ, "CONTACTS_PORT": str(port), **extra}
    return subprocess.Popen(
        [sys.executable, "-m", "services.cli", "serve", "contacts"],
        cwd=REPOSITORY, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def _wait_for_listener(port: int, timeout_s: float) -> None:
    """Wait until the API accepts connections, whatever /readyz then returns."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"the contacts API did not listen on port {port} within {timeout_s} s")


def test_ready_follows_readyz(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv("CONTACTS_PORT", str(port))

    assert probe.check_ready("contacts") == probe.UNHEALTHY

    api = _start_api(port, {})
    try:
        _wait_for_listener(port, 30)
        assert probe.check_ready("contacts") == probe.HEALTHY
    finally:
        api.terminate()
        api.wait(timeout=15)


def test_ready_fails_without_redis(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    monkeypatch.setenv("CONTACTS_PORT", str(port))

    api = _start_api(port, {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    try:
        _wait_for_listener(port, 30)
        assert probe.check_ready("contacts") == probe.UNHEALTHY
    finally:
        api.terminate()
        api.wait(timeout=15)
    assert "contacts API is not ready (503)" in capsys.readouterr().err


def test_invalid_settings_exit_two(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("NURTURE_ENVIRONMENT", "production")
    monkeypatch.delenv("NURTURE_INTERNAL_TOKEN", raising=False)

    assert in_thread(lambda: probe.main(["migrations", "contacts"])) == probe.INVALID
    assert "NURTURE_INTERNAL_TOKEN must be set" in capsys.readouterr().err


def test_unknown_service_exits_two() -> None:
    with pytest.raises(SystemExit) as exit_info:
        probe.main(["worker", "billing"])

    assert exit_info.value.code == 2


def test_script_runs_as_command() -> None:
    result = subprocess.run(
        [sys.executable, str(PROBE_SCRIPT), "migrations", "contacts"],
        cwd=REPOSITORY, capture_output=True, text=True, check=False, timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert PROBE_SCRIPT.stat().st_mode & 0o111, "nurture-probe must be executable"

"""PostgreSQL stopped and started again under load: 503 with Retry-After while down, nothing acknowledged lost.

The machine's PostgreSQL server is shared, so this test runs a private server of its own (initdb
into a temporary folder, pg_ctl on a free loopback port) and restarts only that one. The contacts
service and the gateway run as real processes on it, and events are posted the whole time, both
through the gateway and straight to the contacts service.
"""

import asyncio
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from sqlmodel import col, select

from services.cli.supervisor import Platform, PlatformConfig, free_port
from services.contacts.timeline.models import TimelineEvent
from services.gateway.keys.service import create_key
from services.kit.db import Database
from services.kit.http import INTERNAL_TOKEN_HEADER
from services.kit.migrations import ensure_database, upgrade
from services.kit.settings import SERVICE_NAMES, ServiceSettings
from tests.support.threads import in_thread

if TYPE_CHECKING:
    # Imported for the annotation only, so pytest does not try to collect the class.
    from tests.support.environment import TestEnvironment

PG_CTL = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
SERVICES = ("contacts", "gateway")
# Events accepted before the stop and after the restart; enough that requests were in flight both times.
ACCEPTED_EACH_SIDE = 20
# A busy two-core machine starts the processes and PostgreSQL slowly, so each wait allows minutes.
TIMEOUT_S = 180.0

pytestmark = pytest.mark.skipif(
    not PG_CTL, reason="no PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql/*/bin"
)


class PrivatePostgres:
    """A PostgreSQL server that only this test starts, stops and deletes.

    initdb refuses to run as root, so under root the server runs as the `postgres` system user.
    """

    def __init__(self) -> None:
        self.bin_dir = Path(PG_CTL[-1]).parent
        self.root = Path(tempfile.mkdtemp(prefix="nurture-pg-"))
        self.data_dir = self.root / "data"
        self.log_path = self.root / "server.log"
        self.port = free_port()
        self.user: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            self.user = pwd.getpwnam("postgres")
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str) -> None:
        command = [str(self.bin_dir / argv[0]), *argv[1:]]
        if self.user is not None:
            command = ["runuser", "-u", self.user.pw_name, "--", *command]
        completed = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
        if completed.returncode != 0:
            log = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
            raise RuntimeError(f"{' '.join(argv)} failed with code {completed.returncode}: {completed.stderr}\n{log}")

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data_dir), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_path), "-o", options, "-w", "-t", "120", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "-t", "120", "stop")

    def destroy(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class Running:
    postgres: PrivatePostgres
    platform: Platform
    gateway_url: str
    contacts_url: str
    api_key: str
    internal_token: str
    database_urls: dict[str, str]


async def _new_key(gateway_database_url: str) -> str:
    database = Database(gateway_database_url)
    try:
        async with database.session() as session:
            _, key = await create_key(session, name="postgres-restart", scopes=["*"], rate_limit=0)
        return key
    finally:
        await database.dispose()


@pytest.fixture
def running(environment: "TestEnvironment") -> Iterator[Running]:
    """The contacts service and the gateway as real processes on a private PostgreSQL server."""
    postgres = PrivatePostgres()
    platform: Platform | None = None
    try:
        postgres.init()
        postgres.start()
        namespace = f"t{uuid.uuid4().hex[:8]}"
        database_urls = {service: postgres.url(f"nurture_{service}") for service in SERVICES}
        for service, url in database_urls.items():
            in_thread(lambda url=url: asyncio.run(ensure_database(url)))  # type: ignore[misc]
            # Alembic's async env runs its own event loop; in this thread it would unset the session's.
            in_thread(lambda service=service, url=url: upgrade(service, url))  # type: ignore[misc]

        ports = {service: free_port() for service in SERVICE_NAMES}
        config = PlatformConfig(
            data_dir=postgres.root / "platform",
            redis_url=environment.redis_url,
            ports=ports,
            database_urls=database_urls,
            extra_env={"NURTURE_NAMESPACE": namespace, "NURTURE_DATA_DIR": str(postgres.root / "platform")},
            services=SERVICES,
            run_sink=False,
        )
        platform = Platform(config, report=lambda line: print(f"[platform] {line}"))
        platform.start()
        platform.wait_ready(timeout_s=TIMEOUT_S)
        platform.supervise_in_background()

        key = in_thread(lambda: asyncio.run(_new_key(database_urls["gateway"])))
        token = ServiceSettings().internal_token
        yield Running(
            postgres, platform, f"http://127.0.0.1:{ports['gateway']}", f"http://127.0.0.1:{ports['contacts']}",
            key, token, database_urls,
        )
    finally:
        if platform is not None:
            platform.stop()
        postgres.destroy()


@dataclass
class Load:
    """Events posted in a loop by several callers, with every response kept."""

    accepted: list[str] = field(default_factory=list)
    unavailable: list[httpx.Response] = field(default_factory=list)
    other: list[tuple[str, int, str]] = field(default_factory=list)
    stopping: bool = False

    async def post_until_stopped(self, client: httpx.AsyncClient, path: str, caller: int) -> None:
        number = 0
        while not self.stopping:
            number += 1
            body = {"id": f"pg-{caller}-{number}-{uuid.uuid4().hex[:8]}", "type": "form_submitted",
                    "email": f"pg-restart-{caller}@example.com"}
            try:
                response = await client.post(path, json=body)
            except httpx.TransportError as error:
                self.other.append((path, 0, repr(error)))
                await asyncio.sleep(0.05)
                continue

            if response.status_code == 202:
                self.accepted.append(response.json()["id"])
            elif response.status_code == 503:
                self.unavailable.append(response)
                await asyncio.sleep(0.05)
            else:
                self.other.append((path, response.status_code, response.text[:300]))


async def _wait(condition: Callable[[], bool], description: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {description}")
        await asyncio.sleep(0.05)


async def _stored_ids(database_url: str, ids: list[str]) -> list[str]:
    database = Database(database_url)
    try:
        async with database.session() as session:
            return list((await session.exec(select(TimelineEvent.id).where(col(TimelineEvent.id).in_(ids)))).all())
    finally:
        await database.dispose()


def _logged_errors(running: Running) -> str:
    """Return the error lines of the services' logs, to explain an unexpected response."""
    lines = []
    for child in running.platform.children:
        if child.log_path is not None and child.log_path.exists():
            lines += [f"{child.name}: {line}" for line in child.log_path.read_text(errors="replace").splitlines() if "error" in line.lower()]
    return "\n".join(lines[-40:])


@pytest.mark.timeout(900)
async def test_restart_loses_no_acknowledged_event(running: Running) -> None:
    load = Load()
    gateway = httpx.AsyncClient(base_url=running.gateway_url, timeout=30.0,
                                headers={"Authorization": f"Bearer {running.api_key}"})
    contacts = httpx.AsyncClient(base_url=running.contacts_url, timeout=30.0,
                                 headers={INTERNAL_TOKEN_HEADER: running.internal_token})
    async with gateway, contacts:
        callers = [
            asyncio.create_task(load.post_until_stopped(gateway, "/v1/events", 0)),
            asyncio.create_task(load.post_until_stopped(gateway, "/v1/events", 1)),
            asyncio.create_task(load.post_until_stopped(contacts, "/events", 2)),
        ]
        try:
            await _wait(lambda: len(load.accepted) >= ACCEPTED_EACH_SIDE, "events accepted before the stop")
            await asyncio.to_thread(running.postgres.stop, "immediate")
            accepted_before_stop = len(load.accepted)

            def seen_down_on_both_paths() -> bool:
                paths = {str(response.request.url.path) for response in load.unavailable}
                return {"/v1/events", "/events"} <= paths

            await _wait(seen_down_on_both_paths, "503 answers from the gateway and the contacts service")
            accepted_while_down = len(load.accepted) - accepted_before_stop
            await asyncio.to_thread(running.postgres.start)
            restarted_at = len(load.accepted)
            await _wait(lambda: len(load.accepted) >= restarted_at + ACCEPTED_EACH_SIDE, "events accepted after the restart")
        finally:
            load.stopping = True
            await asyncio.gather(*callers)

    stored = await _stored_ids(running.database_urls["contacts"], load.accepted)

    assert load.other == [], _logged_errors(running)
    assert accepted_while_down <= 3, "only requests already in flight at the stop may be acknowledged"
    for response in load.unavailable:
        assert response.headers["content-type"] == "application/problem+json"
        assert int(response.headers["retry-after"]) > 0
    assert len(set(load.accepted)) == len(load.accepted)
    assert sorted(stored) == sorted(load.accepted)

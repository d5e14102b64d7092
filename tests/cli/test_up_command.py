"""`nurture up` on embedded defaults: ready, serving, restarting a killed child, stopping on Ctrl-C."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from services.cli.supervisor import free_port
from services.kit.settings import SERVICE_NAMES


def _read_until(process: subprocess.Popen[str], pattern: str, timeout_s: float, seen: list[str]) -> re.Match[str]:
    deadline = time.monotonic() + timeout_s
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            if process.poll() is not None:
                break
            continue
        seen.append(line)
        match = re.search(pattern, line)
        if match:
            return match
    raise AssertionError(f"{pattern!r} not printed within {timeout_s} s; output:\n{''.join(seen)}")


def test_up_serves_restarts_and_stops(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.endswith("_DATABASE_URL")}
    env.pop("REDIS_URL", None)
    env.pop("NURTURE_CLOCK_FILE", None)
    ports = {service: free_port() for service in SERVICE_NAMES}
    env.update({f"{service.upper()}_PORT": str(port) for service, port in ports.items()})
    env.update(NURTURE_EMBEDDED_REDIS_PORT=str(free_port()), NURTURE_SMTP_SINK_PORT=str(free_port()), COLUMNS="200")
    data_dir = tmp_path / "data"
    seen: list[str] = []
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "up", "--data-dir", str(data_dir)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        _read_until(process, r"ready in", 180, seen)
        # About 5 s on a quiet two-core machine; printed, not asserted, because a loaded machine is slower.
        print(f"nurture up was ready after {time.monotonic() - started:.1f} s")
        key = _read_until(process, r"API key:\s+(\S+)", 30, seen).group(1)
        gateway = f"http://127.0.0.1:{ports['gateway']}"
        headers = {"Authorization": f"Bearer {key}"}
        accepted = httpx.post(f"{gateway}/v1/events", json={"email": "up@example.com", "type": "page_view"}, headers=headers)

        worker_pid = int((data_dir / "run" / "contacts-worker.pid").read_text())
        os.kill(worker_pid, signal.SIGKILL)
        _read_until(process, r"contacts-worker exited with code -9", 60, seen)
        _read_until(process, r"contacts-worker restarted", 60, seen)
        timeline = httpx.get(f"{gateway}/v1/contacts/{accepted.json()['contact_id']}/timeline", headers=headers)

        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
        seen.extend(process.stdout.read().splitlines())  # type: ignore[union-attr]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert accepted.status_code == 202
    assert [event["id"] for event in timeline.json()["items"]] == [accepted.json()["id"]]
    assert process.returncode == 0, "".join(seen)
    assert (data_dir / "contacts.db").exists()
    assert any("stopped" in line for line in seen)

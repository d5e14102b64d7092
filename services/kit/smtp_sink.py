"""A local SMTP sink (aiosmtpd) that keeps every message it receives as an `.eml` file.

`nurture up` runs it in place of a real relay so every email the platform sends can be read. Files
are named by arrival time and a random suffix, and written then renamed so a reader never sees half
a message.
"""

import asyncio
import os
import uuid
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope

from services.kit.logging import get_logger

log = get_logger(__name__)


class _StoreHandler:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        data = envelope.original_content or envelope.content
        body = data if isinstance(data, bytes) else str(data).encode()
        name = f"{asyncio.get_running_loop().time():020.6f}-{uuid.uuid4().hex}"
        temporary = self.folder / f".{name}.tmp"
        temporary.write_bytes(body)
        os.replace(temporary, self.folder / f"{name}.eml")
        log.info("sink.message_stored", recipients=len(envelope.rcpt_tos), file=f"{name}.eml")
        return "250 Message accepted for delivery"


def start_sink(folder: Path, *, host: str = "127.0.0.1", port: int = 8025) -> Controller:
    """Start the sink in a background thread and return its controller (call `.stop()` to end it)."""
    folder.mkdir(parents=True, exist_ok=True)
    controller = Controller(_StoreHandler(folder), hostname=host, port=port, data_size_limit=20_000_000)
    controller.start()
    return controller


def read_sink(folder: Path) -> list[EmailMessage]:
    """Return every stored message, oldest first."""
    if not folder.exists():
        return []
    paths = sorted(folder.glob("*.eml"))
    return [message_from_bytes(path.read_bytes(), policy=policy.default) for path in paths]  # type: ignore[misc]

"""Reading the emails the platform sent from the local SMTP sink, which keeps each one as an `.eml` file."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from email import message_from_bytes
from email.utils import parseaddr
from pathlib import Path
from urllib.parse import urlsplit

_OPEN_PIXEL = re.compile(r'src="([^"]*/t/o/[^"]+)"')
_CLICK_LINK = re.compile(r'href="([^"]*/t/c/[^"]+)"')


@dataclass(frozen=True)
class Delivered:
    """One email in the sink, with the tracking paths a mail client would request."""

    file: str
    recipient: str
    message_id: str
    enrolment: str | None
    step: str | None
    open_path: str | None
    click_paths: tuple[str, ...]


class Mailbox:
    """The sink's folder, read incrementally: each call returns only the emails not seen before."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.seen: set[str] = set()

    def skip_existing(self) -> None:
        """Mark every email already in the sink as seen, such as those of an earlier run."""
        self.seen.update(self._names())

    def stamp(self) -> int:
        """Return a value that changes whenever an email arrives: the folder's modification time.

        One `stat` call, where counting the files would list a folder of up to hundreds of
        thousands of emails on every poll.
        """
        try:
            return os.stat(self.folder).st_mtime_ns
        except FileNotFoundError:
            return 0

    def new_messages(self) -> list[Delivered]:
        names = sorted(name for name in self._names() if name not in self.seen)
        delivered = [parse_message(name, (self.folder / name).read_bytes()) for name in names]
        self.seen.update(names)
        return delivered

    def _names(self) -> list[str]:
        if not self.folder.exists():
            return []
        return [entry.name for entry in os.scandir(self.folder) if entry.name.endswith(".eml")]


def parse_message(name: str, raw: bytes) -> Delivered:
    """Return the recipient, Message-ID, step and tracking paths of one stored email.

    The parser keeps its default policy (compat32), because the modern one builds a header object
    for every header read. On a two-core EPYC host that took 4 ms an email instead of 0.5 ms.
    """
    message = message_from_bytes(raw)
    html = ""
    for part in message.walk():
        if part.get_content_type() == "text/html":
            payload = part.get_payload(decode=True)
            html = payload.decode(part.get_content_charset() or "utf-8", errors="replace") if isinstance(payload, bytes) else ""
            break
    opens = _OPEN_PIXEL.findall(html)
    clicks = tuple(dict.fromkeys(_path(url) for url in _CLICK_LINK.findall(html)))
    return Delivered(
        file=name,
        recipient=parseaddr(message["To"] or "")[1].strip().lower(),
        message_id=str(message["Message-ID"]).strip(),
        enrolment=message["X-Nurture-Enrolment"],
        step=message["X-Nurture-Step"],
        open_path=_path(opens[0]) if opens else None,
        click_paths=clicks,
    )


def _path(url: str) -> str:
    # The links carry the platform's public base URL. The demo sends each request to its own gateway
    # URL instead, which is the same server when the demo started the platform itself.
    parts = urlsplit(url.replace("&amp;", "&"))
    return parts.path + (f"?{parts.query}" if parts.query else "")

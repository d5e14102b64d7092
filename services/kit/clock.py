"""The platform clock: every service reads the time through `now()`.

In production it is the wall clock in UTC. When `NURTURE_CLOCK_FILE` names a file, the file moves the
clock for every process that reads it: it holds either an offset from the wall clock or a frozen
instant. Tests and the demo use it to live through days of waiting without sleeping. Each process
re-reads the file only when its modification time changes, so `now()` stays cheap.
"""

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

_ENV_VAR = "NURTURE_CLOCK_FILE"
_cache: dict[str, object] = {"key": None, "offset": timedelta(0), "frozen": None}


def _clock_path() -> Path | None:
    value = os.environ.get(_ENV_VAR)
    return Path(value) if value else None


def _load(path: str | Path) -> tuple[timedelta, datetime | None]:
    # `os.stat` on the string, because building a `Path` costs more than the call, and `now()`
    # runs many times per event.
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return timedelta(0), None
    key = (os.fspath(path), stat.st_mtime_ns, stat.st_size)
    if _cache["key"] != key:
        with open(path, encoding="utf-8") as file:
            data = json.loads(file.read() or "{}")
        frozen = data.get("frozen_at")
        _cache["frozen"] = datetime.fromisoformat(frozen) if frozen else None
        _cache["offset"] = timedelta(seconds=float(data.get("offset_s", 0.0)))
        _cache["key"] = key
    return _cache["offset"], _cache["frozen"]  # type: ignore[return-value]


def now() -> datetime:
    """Return the platform's current time as an aware UTC datetime."""
    path = os.environ.get(_ENV_VAR)
    if not path:
        return datetime.now(UTC)

    offset, frozen = _load(path)
    if frozen is not None:
        return frozen
    return datetime.now(UTC) + offset


def offset() -> timedelta:
    """Return how far the platform clock is ahead of the wall clock (zero in production)."""
    return now() - datetime.now(UTC)


def to_wall_clock(instant: datetime) -> datetime:
    """Translate a platform instant into the wall-clock instant at which it falls due.

    arq defers jobs by the wall clock, so a job due at a platform instant is deferred to this value.
    """
    return instant - offset()


def _write(path: Path, data: dict[str, object]) -> None:
    # Write then rename, so a reader in another process never sees a half-written file.
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(data))
    os.replace(temporary, path)


def _require_path() -> Path:
    path = _clock_path()
    if path is None:
        raise RuntimeError(f"the clock can only be moved when {_ENV_VAR} names a file")
    return path


def advance(delta: timedelta) -> datetime:
    """Move the platform clock forward by `delta` for every process and return the new time."""
    path = _require_path()
    offset_now, frozen = _load(path)
    if frozen is not None:
        _write(path, {"frozen_at": (frozen + delta).isoformat()})
    else:
        _write(path, {"offset_s": (offset_now + delta).total_seconds()})
    return now()


def freeze(at: datetime) -> None:
    """Stop the platform clock at `at` (an aware datetime) for every process."""
    if at.tzinfo is None:
        raise ValueError("freeze() needs an aware datetime")
    _write(_require_path(), {"frozen_at": at.astimezone(UTC).isoformat()})


def travel_to(at: datetime) -> None:
    """Set the platform clock to `at` and let it run on from there."""
    if at.tzinfo is None:
        raise ValueError("travel_to() needs an aware datetime")
    _write(_require_path(), {"offset_s": (at - datetime.now(UTC)).total_seconds()})


def reset() -> None:
    """Put the platform clock back on the wall clock."""
    _write(_require_path(), {"offset_s": 0.0})

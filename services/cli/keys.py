"""API key commands, working directly on the gateway's database."""

from rich.console import Console
from rich.table import Table

from services.cli.services import load_settings
from services.gateway.keys.service import authenticate, create_key, list_keys, revoke_key
from services.kit.db import Database


async def create(name: str, scopes: list[str]) -> tuple[str, str]:
    database = Database(load_settings("gateway").database_url)
    try:
        async with database.session() as session:
            row, key = await create_key(session, name=name, scopes=scopes)
        return row.id, key
    finally:
        await database.dispose()


async def is_valid(key: str) -> bool:
    database = Database(load_settings("gateway").database_url)
    try:
        async with database.session() as session:
            return await authenticate(session, key) is not None
    finally:
        await database.dispose()


async def revoke(key_id_or_prefix: str) -> bool:
    database = Database(load_settings("gateway").database_url)
    try:
        async with database.session() as session:
            return await revoke_key(session, key_id_or_prefix) is not None
    finally:
        await database.dispose()


async def show(console: Console) -> None:
    database = Database(load_settings("gateway").database_url)
    try:
        async with database.session() as session:
            rows = await list_keys(session)
    finally:
        await database.dispose()
    table = Table("id", "name", "prefix", "scopes", "created", "revoked")
    for row in rows:
        table.add_row(
            row.id, row.name, row.prefix, " ".join(row.scopes), row.created_at.isoformat(timespec="seconds"),
            row.revoked_at.isoformat(timespec="seconds") if row.revoked_at else "",
        )
    console.print(table)

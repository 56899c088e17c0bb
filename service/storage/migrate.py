"""Alembic, configured in code so the installed package migrates without an alembic.ini."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic import command
from alembic.config import Config

_CHECKOUT = Path(__file__).resolve().parents[2]


def migrations_dir() -> Path:
    """`migrations/` of a source checkout, else the copy an installed wheel carries."""
    candidates = [_CHECKOUT / "migrations"]
    spec = importlib.util.find_spec("relbank_migrations")
    if spec and spec.submodule_search_locations:
        candidates += [Path(p) for p in spec.submodule_search_locations]
    for candidate in candidates:
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError("relbank migrations not found")


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    config.set_main_option(
        "file_template",
        "%%(year)d_%%(month).2d_%%(day).2d_%%(hour).2d%%(minute).2d-%%(rev)s_%%(slug)s",
    )
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def pending(database_url: str) -> list[str]:
    """Revisions not yet applied to the database, oldest first (empty: it is at head)."""
    import asyncio

    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy.ext.asyncio import create_async_engine

    async def current_heads() -> set[str]:
        engine = create_async_engine(database_url)
        try:
            async with engine.connect() as conn:
                heads = await conn.run_sync(
                    lambda c: MigrationContext.configure(c).get_current_heads()
                )
        finally:
            await engine.dispose()
        return set(heads)

    current = asyncio.run(current_heads())
    script = ScriptDirectory.from_config(alembic_config(database_url))
    applied = {rev.revision for head in current for rev in script.iterate_revisions(head, "base")}
    return [
        rev.revision
        for rev in reversed(list(script.walk_revisions()))
        if rev.revision not in applied
    ]

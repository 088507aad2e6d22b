"""The gateway app on real SQL (SQLite, the embedded default, and PostgreSQL) and real Redis."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy.exc import OperationalError

from services.gateway.app import create_app
from shared.db import Base, Database
from shared.settings import GatewaySettings

POSTGRES_URL = os.environ.get("POP_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


async def _postgres_reachable(url: str) -> bool:
    db = Database(url)
    try:
        async with db.engine.connect():
            return True
    except (OSError, OperationalError):
        return False
    finally:
        await db.dispose()


@asynccontextmanager
async def gateway_client(settings: GatewaySettings) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway app, started (lifespan) and reached in-process over ASGI."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield client


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty gateway database of each kind."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/gateway.db"
    url = POSTGRES_URL
    if not await _postgres_reachable(url):
        if os.environ.get("POP_REQUIRE_POSTGRES"):
            pytest.fail(f"PostgreSQL required but not reachable at {url}")
        pytest.skip(f"PostgreSQL not reachable at {url} (set POP_TEST_POSTGRES_URL)")
    db = Database(url)
    async with db.engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
    await db.dispose()
    return url


@pytest.fixture
async def api(database_url: str, redis_url: str) -> AsyncIterator[httpx.AsyncClient]:
    # Nothing listens on port 9: the generator is "down" for these tests.
    settings = GatewaySettings(
        database_url=database_url,
        generator_url="http://127.0.0.1:9",
        redis_url=redis_url,
        allowed_hosts=["127.0.0.1"],  # the external judges these tests start
    )
    async with gateway_client(settings) as client:
        yield client

"""The gateway's FastAPI app: routers, the database and the generator client, wired at start."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from redis.asyncio import Redis

from services.gateway.routes import generator, metrics, runs
from shared.clients.generator import GeneratorClient
from shared.db import Database
from shared.problems import install_problem_handlers
from shared.schemas import SCHEMA_VERSION
from shared.settings import GatewaySettings


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(settings.database_url)
        await db.create_schema()
        app.state.db = db
        app.state.generator = GeneratorClient(settings.generator_url, timeout_s=10.0)
        app.state.settings = settings
        app.state.redis = Redis.from_url(settings.redis_url)
        yield
        await app.state.redis.aclose()
        await app.state.generator.aclose()
        await db.dispose()

    app = FastAPI(title="POP gateway", version=SCHEMA_VERSION, lifespan=lifespan)
    install_problem_handlers(app)
    app.include_router(runs.router)
    app.include_router(generator.router)
    app.include_router(metrics.router)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app

"""The gateway's FastAPI app: routers, the database and the generator client, wired at start."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from redis.asyncio import Redis

from services.gateway import auth, configs
from services.gateway.deps import DatabaseDep, RedisDep
from services.gateway.eval_runner import EvalRunner
from services.gateway.fleet import FleetControl
from services.gateway.routes import checkpoints, evals, generator, judges, metrics, run_data, runs, tokens, training
from services.gateway.routes.dashboard import mount_dashboard
from services.gateway.routes.responses import UNAUTHORIZED, problems
from shared.clients.generator import GeneratorFleet
from shared.db import Database
from shared.hosts import HostAllowlist
from shared.limits import BodyLimit
from shared.observability import instrument, readiness
from shared.problems import document_problems, install_problem_handlers
from shared.schemas import SCHEMA_VERSION
from shared.settings import GatewaySettings, reveal


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(settings.database_url)
        await db.create_schema()
        app.state.db = db
        app.state.generator = GeneratorFleet(
            settings.generator_url, timeout_s=10.0, token=reveal(settings.generator_token)
        )
        app.state.settings = settings
        app.state.redis = Redis.from_url(settings.redis_url)
        app.state.fleet = FleetControl(app.state.generator, app.state.redis, settings.swap_timeout_s)
        reconciler = asyncio.create_task(app.state.fleet.reconcile_forever(settings.fleet_check_s), name="fleet")
        async with db.session() as session:
            await auth.warn_if_open(session, settings)
        app.state.eval_runner = EvalRunner(db, app.state.redis, settings)
        eval_task = asyncio.create_task(app.state.eval_runner.serve(), name="eval-runner")
        yield
        reconciler.cancel()
        eval_task.cancel()
        with suppress(asyncio.CancelledError):
            await eval_task
        await app.state.redis.aclose()
        await app.state.generator.aclose()
        await db.dispose()

    app = FastAPI(title="POP gateway", version=SCHEMA_VERSION, lifespan=lifespan)
    app.state.run_defaults = configs.load_defaults(settings.run_defaults)
    app.state.allowed_hosts = HostAllowlist(settings.allowed_hosts, "POP_GATEWAY_ALLOWED_HOSTS")
    install_problem_handlers(app)
    document_problems(app)
    instrument(app, "gateway")
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    for router in (
        runs.router,
        training.router,
        run_data.router,
        checkpoints.router,
        generator.router,
        judges.router,
        evals.router,
    ):
        app.include_router(router, dependencies=[auth.Authorized], responses=UNAUTHORIZED)
    app.include_router(tokens.router, dependencies=[auth.AuthorizedAlways], responses=UNAUTHORIZED)
    app.include_router(metrics.router, dependencies=[auth.Authorized], responses=UNAUTHORIZED)
    mount_dashboard(app)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process serves (liveness)."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses=problems(_503="A dependency is unusable"))
    async def readyz(db: DatabaseDep, redis: RedisDep) -> JSONResponse:
        """SQL and Redis answer (readiness); the generator is not required: runs can be read without it."""
        return await readiness({"database": db.ping, "redis": redis.ping})

    return app

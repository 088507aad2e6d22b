"""Typed dependencies of the gateway's routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from shared.clients.generator import GeneratorClient
from shared.db import Database
from shared.settings import GatewaySettings


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    db: Database = request.app.state.db
    async with db.session() as session:
        yield session


def get_database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def get_generator(request: Request) -> GeneratorClient:
    client: GeneratorClient = request.app.state.generator
    return client


def get_redis(request: Request) -> Redis:
    redis: Redis = request.app.state.redis
    return redis


def get_settings(request: Request) -> GatewaySettings:
    settings: GatewaySettings = request.app.state.settings
    return settings


DatabaseDep = Annotated[Database, Depends(get_database)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
GeneratorDep = Annotated[GeneratorClient, Depends(get_generator)]
RedisDep = Annotated[Redis, Depends(get_redis)]
SettingsDep = Annotated[GatewaySettings, Depends(get_settings)]

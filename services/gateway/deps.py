"""Typed dependencies of the gateway's routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from services.gateway.fleet import FleetControl
from shared.clients.generator import GeneratorFleet
from shared.db import Database
from shared.settings import GatewaySettings


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    db: Database = request.app.state.db
    async with db.session() as session:
        yield session


def get_database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def get_generator(request: Request) -> GeneratorFleet:
    fleet: GeneratorFleet = request.app.state.generator
    return fleet


def get_control(request: Request) -> FleetControl:
    control: FleetControl = request.app.state.fleet
    return control


def get_redis(request: Request) -> Redis:
    redis: Redis = request.app.state.redis
    return redis


def get_settings(request: Request) -> GatewaySettings:
    settings: GatewaySettings = request.app.state.settings
    return settings


DatabaseDep = Annotated[Database, Depends(get_database)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
GeneratorDep = Annotated[GeneratorFleet, Depends(get_generator)]
FleetDep = Annotated[FleetControl, Depends(get_control)]
RedisDep = Annotated[Redis, Depends(get_redis)]
SettingsDep = Annotated[GatewaySettings, Depends(get_settings)]

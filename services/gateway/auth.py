"""Bearer tokens: every change needs one; reads too when ``auth_reads`` is on.

Tokens come from settings (a deployment's Secret) or the database (``POST /v1/tokens``). Both are
compared as SHA-256 digests, so the database never holds a usable secret. A gateway with no token
anywhere is open (the local default) and logs so; the first token created closes it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets

from fastapi import Depends, Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.gateway.deps import SessionDep, SettingsDep
from shared.db import TokenRecord
from shared.problems import ProblemError
from shared.schemas import utcnow
from shared.settings import GatewaySettings

log = logging.getLogger(__name__)
READS = frozenset({"GET", "HEAD", "OPTIONS"})
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="pop"'}
TOKEN_PREFIX = "pop_"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def settings_digests(settings: GatewaySettings) -> set[str]:
    return {digest(t.get_secret_value()) for t in settings.api_tokens} | {h.lower() for h in settings.api_token_hashes}


async def database_digests(session: AsyncSession) -> list[str]:
    rows = await session.scalars(select(TokenRecord.token_hash).where(TokenRecord.revoked_at.is_(None)))
    return list(rows)


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if not scheme:
        return None
    if scheme.lower() != "bearer" or not token.strip():
        raise ProblemError(401, "Unauthorized", "the Authorization header must read 'Bearer <token>'", CHALLENGE)
    return token.strip()


async def authorize(request: Request, session: SessionDep, settings: SettingsDep) -> None:
    """Let the request through, or answer 401 with a problem body naming what is missing."""
    if request.method in READS and not settings.auth_reads:
        return
    await authorize_all(request, session, settings)


async def authorize_all(request: Request, session: SessionDep, settings: SettingsDep) -> None:
    """Reads included: for what lists secrets' metadata (tokens)."""
    token = _bearer(request)
    known = settings_digests(settings) | set(await database_digests(session))
    if not known:
        return  # no tokens configured: an open (local) deployment
    if token is None:
        raise ProblemError(401, "Unauthorized", "this endpoint needs 'Authorization: Bearer <token>'", CHALLENGE)
    presented = digest(token)
    if not any(hmac.compare_digest(presented, k) for k in known):
        raise ProblemError(401, "Unauthorized", "the bearer token is unknown or revoked", CHALLENGE)


Authorized = Depends(authorize)
AuthorizedAlways = Depends(authorize_all)


async def issue(session: AsyncSession, name: str) -> tuple[TokenRecord, str]:
    token = new_token()
    record = TokenRecord(name=name, token_hash=digest(token))
    session.add(record)
    await session.commit()
    return record, token


async def revoke(session: AsyncSession, token_id: int) -> TokenRecord:
    record = await session.get(TokenRecord, token_id)
    if record is None:
        raise ProblemError(404, "Token not found", f"no token with id {token_id}")
    if record.revoked_at is None:
        record.revoked_at = utcnow()
        await session.commit()
    return record


async def warn_if_open(session: AsyncSession, settings: GatewaySettings) -> None:
    if not settings_digests(settings) and not await database_digests(session):
        log.warning("no API tokens configured: every endpoint is open (set POP_GATEWAY_API_TOKENS)")

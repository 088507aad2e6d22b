"""API tokens kept in the database: issue (the secret is shown once), list, revoke."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status
from sqlalchemy import select

from services.gateway import auth
from services.gateway.deps import SessionDep
from services.gateway.routes.responses import problems
from shared.api import MAX_INT, TokenCreate, TokenIssued, TokenRead
from shared.db import TokenRecord

router = APIRouter(prefix="/v1/tokens", tags=["auth"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=TokenIssued)
async def issue_token(body: TokenCreate, session: SessionDep) -> TokenIssued:
    """A new bearer token. On an open gateway (no token yet) anyone may ask: the first token closes it."""
    record, token = await auth.issue(session, body.name)
    return TokenIssued(**TokenRead.model_validate(record).model_dump(), token=token)


@router.get("", response_model=list[TokenRead])
async def list_tokens(session: SessionDep) -> list[TokenRead]:
    rows = await session.scalars(select(TokenRecord).order_by(TokenRecord.id))
    return [TokenRead.model_validate(t) for t in rows]


@router.delete("/{token_id}", response_model=TokenRead, responses=problems(_404="No such token"))
async def revoke_token(token_id: Annotated[int, Path(ge=1, le=MAX_INT)], session: SessionDep) -> TokenRead:
    """Requests bearing it are refused from now on; idempotent."""
    return TokenRead.model_validate(await auth.revoke(session, token_id))

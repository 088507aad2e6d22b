"""External judges: register one by URL (it must pass a health check), list, check again, remove.

A run config names a registered judge as ``judge.name``; the gateway fills in its URL at launch."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status
from sqlalchemy import select

from services.gateway import configs
from services.gateway.deps import SessionDep
from services.gateway.routes.responses import problems
from shared.api import JudgeRead, JudgeRegistration
from shared.db import JudgeRecord
from shared.problems import ProblemError
from shared.schemas import utcnow

router = APIRouter(prefix="/v1/judges", tags=["judges"])
JUDGE_NOT_FOUND = problems(_404="No judge of that name")


async def _get(session: SessionDep, name: str) -> JudgeRecord:
    judge = await session.get(JudgeRecord, name)
    if judge is None:
        raise ProblemError(404, "Judge not found", f"no judge registered as {name!r}")
    return judge


async def _check(judge: JudgeRecord) -> None:
    """Record the health check's outcome on the row; the caller commits."""
    judge.checked_at = utcnow()
    try:
        judge.schema_version = await configs.judge_health(judge.url)
        judge.healthy, judge.error = True, None
    except ProblemError as exc:
        judge.healthy, judge.error = False, exc.detail


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=JudgeRead,
    responses=problems(_409="The name is taken", _422="Invalid registration, or the judge failed its health check"),
)
async def register_judge(body: JudgeRegistration, request: Request, session: SessionDep) -> JudgeRead:
    """Only a judge that answers its health check in our schema version is registered."""
    if (why := request.app.state.allowed_hosts.refusal(body.url)) is not None:
        errors = [{"loc": ["body", "url"], "msg": why, "type": "host"}]
        raise ProblemError(422, "Judge refused", f"url: {why}", errors=errors)
    if await session.get(JudgeRecord, body.name) is not None:
        raise ProblemError(409, "Judge already registered", f"a judge named {body.name!r} exists; delete it first")
    version = await configs.judge_health(body.url)
    judge = JudgeRecord(
        name=body.name, url=body.url.rstrip("/"), description=body.description,
        healthy=True, schema_version=version, checked_at=utcnow(),
    )  # fmt: skip
    session.add(judge)
    await session.commit()
    return JudgeRead.model_validate(judge)


@router.get("", response_model=list[JudgeRead])
async def list_judges(session: SessionDep) -> list[JudgeRead]:
    rows = await session.scalars(select(JudgeRecord).order_by(JudgeRecord.name))
    return [JudgeRead.model_validate(j) for j in rows]


@router.get("/{name}", response_model=JudgeRead, responses=JUDGE_NOT_FOUND)
async def get_judge(name: str, session: SessionDep) -> JudgeRead:
    return JudgeRead.model_validate(await _get(session, name))


@router.post("/{name}/health", response_model=JudgeRead, responses=JUDGE_NOT_FOUND)
async def check_judge(name: str, session: SessionDep) -> JudgeRead:
    """Check it now; the answer (200 either way) says whether it is healthy and, if not, why."""
    judge = await _get(session, name)
    await _check(judge)
    await session.commit()
    return JudgeRead.model_validate(judge)


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response, responses=JUDGE_NOT_FOUND)
async def delete_judge(name: str, session: SessionDep) -> Response:
    """Runs already launched keep the URL they were given."""
    await session.delete(await _get(session, name))
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)

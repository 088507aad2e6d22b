"""Evals: score checkpoints or endpoints on an eval set, side by side, in the background."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from services.gateway import evals
from services.gateway.deps import SessionDep, SettingsDep
from services.gateway.routes.responses import BAD_QUERY, problems
from shared.api import MAX_INT
from shared.evaluation.api import EvalCreate, EvalList, EvalRead, EvalStatus

router = APIRouter(prefix="/v1/evals", tags=["evals"])
EVAL_NOT_FOUND = problems(_404="No such eval")


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=EvalRead,
    responses=problems(
        _409="A checkpoint target, and no eval generator is configured",
        _422="An invalid request: the set's file, a target, the judge or the criteria (the field is named)",
        _503="A checkpoint target, and the eval generator does not answer",
    ),
)
async def create_eval(
    body: EvalCreate, request: Request, response: Response, session: SessionDep, settings: SettingsDep
) -> EvalRead:
    """Queue an eval; poll ``GET /v1/evals/{id}`` (``Location``) until it is completed or failed."""
    record = await evals.accept(session, body, settings, request.app.state.allowed_hosts)
    request.app.state.eval_runner.wake()
    response.headers["Location"] = f"/v1/evals/{record.id}"
    return evals.to_read(record)


@router.get("", response_model=EvalList, responses=BAD_QUERY)
async def list_evals(
    session: SessionDep,
    run_id: Annotated[str | None, Query(max_length=32, description="Only this run's.")] = None,
    eval_status: Annotated[list[EvalStatus] | None, Query(alias="status", description="Any of these.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
) -> EvalList:
    """Newest first."""
    rows, total = await evals.list_evals(session, run_id, eval_status, limit, offset)
    return EvalList(items=[evals.to_read(r) for r in rows], total=total)


@router.get("/{eval_id}", response_model=EvalRead, responses=EVAL_NOT_FOUND)
async def get_eval(eval_id: str, session: SessionDep) -> EvalRead:
    """Where it stands, each finished target's report, and the paired gain once all are done."""
    return evals.to_read(await evals.get_eval(session, eval_id))


@router.delete(
    "/{eval_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={**EVAL_NOT_FOUND, **problems(_409="It is running")},
)
async def delete_eval(eval_id: str, session: SessionDep) -> Response:
    """Forget a pending or finished eval."""
    await evals.delete_eval(session, eval_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

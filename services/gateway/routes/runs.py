"""Runs: launch from a run config (JSON or YAML), list, inspect, pause, resume, stop, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response, status

from services.gateway import configs, idempotency, store
from services.gateway.deps import GeneratorDep, RedisDep, SessionDep
from services.gateway.routes.responses import BAD_QUERY, CONFLICT, NOT_FOUND, problems
from shared.api import MAX_INT, RunList, RunRead, RunStatus
from shared.config import RunConfig
from shared.streams import dead_letter_key, stream_key
from shared.synthesis import ledger_key, recent_tasks_key

router = APIRouter(prefix="/v1/runs", tags=["runs"])

RUN_CONFIG_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": RunConfig.model_json_schema(ref_template="#/components/schemas/{model}")},
            "application/yaml": {"schema": {"type": "string"}},
        },
    }
}
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Retries with the same key and config get the first request's run back (200, not 201).",
    ),
]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=RunRead,
    openapi_extra=RUN_CONFIG_BODY,
    responses={
        200: {"description": "Replayed: the run an earlier request with this Idempotency-Key made"},
        **problems(
            _400="The body is not JSON or YAML",
            _422="Invalid config (field-level errors), a model that does not resolve, an unusable judge, or a key "
            "reused for another config",
            _503="The model hub is unreachable and the model is not in the cache; try again later",
        ),
    },
)
async def create_run(request: Request, response: Response, session: SessionDep, key: IdempotencyKey = None) -> RunRead:
    """Launch a run: a trainer claims it and producers start feeding it."""
    config = await configs.read_config(request, session)
    if key is None:
        return store.to_read(await store.create_run(session, config))
    run, created = await idempotency.create_once(session, key, config)
    if not created:
        response.status_code = status.HTTP_200_OK
        response.headers["Idempotent-Replayed"] = "true"
    return store.to_read(run)


@router.get("", response_model=RunList, responses=BAD_QUERY)
async def list_runs(
    session: SessionDep,
    run_status: Annotated[list[RunStatus] | None, Query(alias="status", description="Any of these.")] = None,
    name: Annotated[str | None, Query(max_length=120, description="Part of the run's name.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
) -> RunList:
    """Newest first; ``total`` counts every match, for paging with ``offset``."""
    rows, total = await store.list_runs(session, run_status, limit, offset, name)
    return RunList(items=[store.to_read(r) for r in rows], total=total)


@router.get("/{run_id}", response_model=RunRead, responses=NOT_FOUND)
async def get_run(run_id: str, session: SessionDep, generator: GeneratorDep) -> RunRead:
    """Status, step, policy version, the recent mean score and the score of every step."""
    run = await store.get_run(session, run_id)
    served: int | None = None
    try:
        policy = await generator.policy()
        served = policy.version if policy.run_id == run_id else None
    except Exception:  # the generator being down must not hide the run's state
        served = None
    return store.to_read(run, served)


@router.post("/{run_id}/pause", response_model=RunRead, responses={**NOT_FOUND, **CONFLICT})
async def pause_run(run_id: str, session: SessionDep) -> RunRead:
    """Producers stop feeding it; its trainer finishes the update in hand, checkpoints it and lets go."""
    return store.to_read(await store.pause_run(session, run_id))


@router.post("/{run_id}/resume", response_model=RunRead, responses={**NOT_FOUND, **CONFLICT})
async def resume_run(run_id: str, session: SessionDep) -> RunRead:
    """Pending again: the next free trainer claims it and goes on from its newest checkpoint."""
    return store.to_read(await store.resume_run(session, run_id))


@router.post("/{run_id}/stop", response_model=RunRead, responses={**NOT_FOUND, **CONFLICT})
async def stop_run(run_id: str, session: SessionDep) -> RunRead:
    """End it for good; its checkpoints stay."""
    return store.to_read(await store.finish_run(session, run_id, RunStatus.stopped, None))


@router.delete(
    "/{run_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response, responses={**NOT_FOUND, **CONFLICT}
)
async def delete_run(run_id: str, session: SessionDep, redis: RedisDep) -> Response:
    """Forget a run that is not training: its rows, its episode stream and its synthesis ledger.

    Checkpoint folders on shared storage are left to the storage's own retention."""
    await store.delete_run(session, run_id)
    await redis.delete(stream_key(run_id), dead_letter_key(run_id), ledger_key(run_id), recent_tasks_key(run_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)

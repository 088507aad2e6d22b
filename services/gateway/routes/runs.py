"""Runs: launch from a run config (JSON or YAML), inspect, stop; the trainer's claim/step/finish."""

from __future__ import annotations

import json
from typing import Annotated

import httpx
import yaml
from fastapi import APIRouter, Query, Request, Response, status
from pydantic import ValidationError

from services.gateway import store
from services.gateway.deps import GeneratorDep, RedisDep, SessionDep
from shared.api import (
    CheckpointRead,
    ClaimRequest,
    FinishReport,
    RunList,
    RunRead,
    RunStatus,
    StepReport,
)
from shared.clients.http import ServiceError
from shared.clients.judge import JudgeClient
from shared.config import RunConfig
from shared.problems import ProblemError
from shared.schemas import SCHEMA_VERSION
from shared.synthesis import SynthesisLedger, SynthesisRead
from shared.tasktypes import TaskTypeError, load_task_types

router = APIRouter(prefix="/v1/runs", tags=["runs"])
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml")
JUDGE_CHECK_TIMEOUT_S = 10.0

RUN_CONFIG_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": RunConfig.model_json_schema(ref_template="#/components/schemas/{model}")},
            "application/yaml": {"schema": {"type": "string"}},
        },
    }
}


async def _read_config(request: Request) -> RunConfig:
    body = await request.body()
    try:
        if request.headers.get("content-type", "").split(";")[0].strip() in YAML_TYPES:
            config = RunConfig.from_yaml(body.decode())
        else:
            config = RunConfig.model_validate(json.loads(body or b"{}"))
    except ValidationError as exc:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
        raise ProblemError(422, "Invalid run config", detail, errors=errors) from exc
    except (yaml.YAMLError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError too
        raise ProblemError(400, "Unreadable run config", str(exc)) from exc
    try:
        load_task_types(config.selfplay.task_mix, config.selfplay.task_dirs)
    except TaskTypeError as exc:
        loc = ["selfplay", "task_mix"]
        errors = [{"loc": loc, "msg": str(exc), "type": "task_type"}]
        raise ProblemError(422, "Invalid run config", f"selfplay.task_mix: {exc}", errors=errors) from exc
    return config


async def _check_judge(url: str) -> None:
    """An external judge must answer its health check and speak our schema version, before the run exists."""
    judge = JudgeClient(url, timeout_s=JUDGE_CHECK_TIMEOUT_S)
    try:
        health = await judge.healthz()
    except (httpx.HTTPError, ServiceError) as exc:
        raise ProblemError(422, "Judge unusable", f"judge.url {url}: health check failed: {exc!r}") from exc
    finally:
        await judge.aclose()
    version = health.get("schema_version")
    if version != SCHEMA_VERSION:
        detail = f"judge.url {url} speaks schema version {version!r}; this deployment speaks {SCHEMA_VERSION!r}"
        raise ProblemError(422, "Judge unusable", detail)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=RunRead, openapi_extra=RUN_CONFIG_BODY)
async def create_run(request: Request, session: SessionDep) -> RunRead:
    """Launch a run: a trainer claims it and producers start feeding it."""
    config = await _read_config(request)
    if config.judge.url:
        await _check_judge(config.judge.url)
    return store.to_read(await store.create_run(session, config))


@router.get("", response_model=RunList)
async def list_runs(
    session: SessionDep,
    run_status: Annotated[RunStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> RunList:
    rows, total = await store.list_runs(session, run_status, limit, offset)
    return RunList(items=[store.to_read(r) for r in rows], total=total)


@router.post("/claim", response_model=RunRead, responses={204: {"description": "Nothing to claim"}})
async def claim_run(body: ClaimRequest, session: SessionDep) -> RunRead | Response:
    """For trainers: take the oldest pending run, exclusively."""
    run = await store.claim_run(session, body.trainer)
    return Response(status_code=204) if run is None else store.to_read(run)


@router.get("/{run_id}", response_model=RunRead, responses={404: {}})
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


@router.post("/{run_id}/stop", response_model=RunRead, responses={404: {}, 409: {}})
async def stop_run(run_id: str, session: SessionDep) -> RunRead:
    return store.to_read(await store.finish_run(session, run_id, RunStatus.stopped, None))


@router.post("/{run_id}/steps", response_model=RunRead, responses={404: {}, 409: {}})
async def report_step(run_id: str, body: StepReport, session: SessionDep) -> RunRead:
    """For trainers: record a durable update and its checkpoint."""
    return store.to_read(await store.record_step(session, run_id, body))


@router.post("/{run_id}/finish", response_model=RunRead, responses={404: {}, 409: {}})
async def finish_run(run_id: str, body: FinishReport, session: SessionDep) -> RunRead:
    return store.to_read(await store.finish_run(session, run_id, body.status, body.error))


@router.get("/{run_id}/checkpoints", response_model=list[CheckpointRead], responses={404: {}})
async def list_checkpoints(run_id: str, session: SessionDep) -> list[CheckpointRead]:
    return await store.list_checkpoints(session, run_id)


@router.get("/{run_id}/synthesis", response_model=SynthesisRead, responses={404: {}})
async def synthesis(run_id: str, session: SessionDep, redis: RedisDep) -> SynthesisRead:
    """What the producers drew, made and rejected (by reason), and how varied recent tasks are."""
    await store.get_run(session, run_id)
    return await SynthesisLedger(redis, run_id).read()

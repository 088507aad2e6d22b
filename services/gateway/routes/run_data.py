"""What a run produced, for people and dashboards: metric series, sample episodes, synthesis counts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from services.gateway import episodes, store
from services.gateway.deps import RedisDep, SessionDep
from services.gateway.routes.responses import BAD_QUERY, NOT_FOUND
from shared.api import MAX_INT, EpisodePage, MetricSeries
from shared.synthesis import SynthesisLedger, SynthesisRead

router = APIRouter(prefix="/v1/runs/{run_id}", tags=["runs"])


@router.get("/metrics", response_model=MetricSeries, responses={**NOT_FOUND, **BAD_QUERY})
async def metric_series(
    run_id: str,
    session: SessionDep,
    names: Annotated[list[str] | None, Query(alias="name", description="Only these metrics (repeatable).")] = None,
    after_step: Annotated[int, Query(ge=0, le=MAX_INT, description="Only steps after this one (for polling).")] = 0,
) -> MetricSeries:
    """Every step's metrics, oldest first: loss, rewards by task type, rubric pass rates, staleness, throughput."""
    return await store.metric_series(session, run_id, set(names) if names else None, after_step)


@router.get("/episodes", response_model=EpisodePage, responses={**NOT_FOUND, **BAD_QUERY})
async def sample_episodes(
    run_id: str,
    session: SessionDep,
    redis: RedisDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    before: Annotated[
        str | None, Query(pattern=episodes.ENTRY_ID, description="``next_cursor`` of the previous page.")
    ] = None,
) -> EpisodePage:
    """Scored groups, newest first: the task, its rubric, every answer with its verdicts and reward."""
    await store.get_run(session, run_id)
    return await episodes.page(redis, run_id, limit, before)


@router.get("/synthesis", response_model=SynthesisRead, responses=NOT_FOUND)
async def synthesis(run_id: str, session: SessionDep, redis: RedisDep) -> SynthesisRead:
    """What the producers drew, made and rejected (by reason), and how varied recent tasks are."""
    await store.get_run(session, run_id)
    return await SynthesisLedger(redis, run_id).read()

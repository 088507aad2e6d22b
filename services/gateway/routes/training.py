"""The trainer's side of a run: claim it, record each durable update, report how it ended."""

from __future__ import annotations

from fastapi import APIRouter, Response

from services.gateway import store
from services.gateway.deps import SessionDep
from services.gateway.routes.responses import CONFLICT, NOT_FOUND
from shared.api import ClaimRequest, FinishReport, RewindCommand, RunRead, StepReport

router = APIRouter(prefix="/v1/runs", tags=["trainer"])


@router.post("/claim", response_model=RunRead, responses={204: {"description": "Nothing to claim"}})
async def claim_run(body: ClaimRequest, session: SessionDep) -> RunRead | Response:
    """Take the run this trainer was running (it restarted), else the oldest pending run, exclusively."""
    run = await store.claim_run(session, body.trainer)
    return Response(status_code=204) if run is None else store.to_read(run)


@router.post("/{run_id}/steps", response_model=RunRead, responses={**NOT_FOUND, **CONFLICT})
async def report_step(run_id: str, body: StepReport, session: SessionDep) -> RunRead:
    """Record a durable update and its checkpoint; 409 when out of order or the run has ended."""
    return store.to_read(await store.record_step(session, run_id, body))


@router.post("/{run_id}/rewind", response_model=RunRead, responses={**NOT_FOUND, **CONFLICT})
async def rewind_run(run_id: str, body: RewindCommand, session: SessionDep) -> RunRead:
    """Take the run back to an earlier step: its trainer resumed from a resumable state older than the run's
    newest step (``trainer.resume_every`` > 1) and retrains what came after, from unacknowledged entries.
    409 when the step is ahead of the run's or the run has ended."""
    return store.to_read(await store.rewind_run(session, run_id, body))


@router.post("/{run_id}/finish", response_model=RunRead, responses={**NOT_FOUND, **CONFLICT})
async def finish_run(run_id: str, body: FinishReport, session: SessionDep) -> RunRead:
    return store.to_read(await store.finish_run(session, run_id, body.status, body.error))

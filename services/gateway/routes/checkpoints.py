"""A run's checkpoints: list them, read a manifest, promote one to the generator, roll back."""

from __future__ import annotations

from typing import Annotated

import httpx
from fastapi import APIRouter, Path, Response

from services.gateway import pins, store, swapping
from services.gateway.deps import FleetDep, GeneratorDep, SessionDep, SettingsDep
from services.gateway.routes.generator import SWAP_ERRORS
from services.gateway.routes.responses import CONFLICT, NOT_FOUND, problems
from shared.api import MAX_INT, CheckpointRead, RollbackCommand, RunStatus, SwapResult
from shared.clients.http import ServiceError
from shared.problems import ProblemError

Version = Annotated[int, Path(ge=0, le=MAX_INT, description="A policy version of the run.")]
router = APIRouter(prefix="/v1/runs/{run_id}", tags=["checkpoints"])
UNAVAILABLE = problems(_503="The generator does not answer: whether it serves the version is unknown")
ROLLBACK_ALLOWED = (RunStatus.paused, RunStatus.completed, RunStatus.stopped, RunStatus.failed)


@router.get("/checkpoints", response_model=list[CheckpointRead], responses=NOT_FOUND)
async def list_checkpoints(run_id: str, session: SessionDep) -> list[CheckpointRead]:
    """Oldest first; a version pruned from storage (``trainer.keep_last``) is no longer listed."""
    return await store.list_checkpoints(session, run_id)


@router.get("/checkpoints/{version}", response_model=CheckpointRead, responses=NOT_FOUND)
async def get_checkpoint(run_id: str, version: Version, session: SessionDep) -> CheckpointRead:
    """Its manifest: run, version, step, base model, weight mode and the sha256 of every file."""
    await store.get_run(session, run_id)
    return store.checkpoint_read(await store.get_checkpoint(session, run_id, version))


@router.delete(
    "/checkpoints/{version}",
    status_code=204,
    responses={**NOT_FOUND, **problems(_409="The generator serves it or an unfinished eval names it"), **UNAVAILABLE},
)
async def delete_checkpoint(run_id: str, version: Version, session: SessionDep, control: FleetDep) -> Response:
    """Forget a version pruned from storage (the trainer's ``keep_last``); the trainer deletes its folder only
    after this answers 204. 409 while the generator serves it or an unfinished eval names it."""
    record = await store.get_checkpoint(session, run_id, version)
    holders = await pins.pinned_by(session, control, run_id, version)
    if holders:
        raise ProblemError(409, "Checkpoint in use", f"run {run_id} v{version} is held by {', '.join(holders)}")
    await session.delete(record)
    await session.commit()
    return Response(status_code=204)


@router.post("/checkpoints/{version}/promote", response_model=SwapResult, responses=SWAP_ERRORS)
async def promote(
    run_id: str, version: Version, session: SessionDep, control: FleetDep, settings: SettingsDep
) -> SwapResult:
    """Serve this version now (0: the run's base model). A running run's trainer swaps forward at its next update."""
    return await swapping.swap_to(session, control, run_id, version, settings.swap_timeout_s)


@router.post("/rollback", response_model=SwapResult, responses={**SWAP_ERRORS, **CONFLICT})
async def rollback(
    run_id: str,
    command: RollbackCommand,
    session: SessionDep,
    generator: GeneratorDep,
    control: FleetDep,
    settings: SettingsDep,
) -> SwapResult:
    """Serve an earlier version of a run that is not training (pause it first): by default, the one
    before the version the generator serves now."""
    run = await store.get_run(session, run_id)
    if RunStatus(run.status) not in ROLLBACK_ALLOWED:
        detail = f"run {run_id} is {run.status}: its trainer would swap forward again; pause or stop it first"
        raise ProblemError(409, f"Cannot roll back a {run.status} run", detail)
    target = command.version
    if target is None:
        try:
            served = await generator.policy()
        except (httpx.HTTPError, ServiceError) as exc:
            raise ProblemError(503, "Generator unavailable", repr(exc)) from exc
        if served.run_id != run_id or served.version == 0:
            detail = f"the generator serves {served.run_id or 'no run'} v{served.version}: name the version to serve"
            raise ProblemError(409, "Nothing to roll back from", detail)
        target = served.version - 1
    if target >= run.policy_version:
        detail = f"v{target} is not earlier than run {run_id}'s newest version v{run.policy_version}"
        raise ProblemError(409, "Not a rollback", detail)
    return await swapping.swap_to(session, control, run_id, target, settings.swap_timeout_s)

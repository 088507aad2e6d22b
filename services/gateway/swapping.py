"""Point the generator at a run's checkpoint (or, for version 0, its base model) and report how it went."""

from __future__ import annotations

import asyncio
import time
from typing import Literal

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from services.gateway import store
from services.gateway.fleet import FleetControl
from shared.api import ReplicaSwap, SwapResult
from shared.clients.http import ServiceError
from shared.config import RunConfig
from shared.modeling import ModelError, resolve_model
from shared.problems import ProblemError
from shared.schemas import CheckpointManifest, SwapRequest, WeightMode


async def swap_request(session: AsyncSession, run_id: str, version: int) -> SwapRequest:
    run = await store.get_run(session, run_id)
    if version == 0:  # the base model, in full, whatever the run trains
        config = RunConfig.model_validate(run.config)
        return SwapRequest(version=0, path=await base_folder(config), run_id=run_id, mode=WeightMode.full)
    record = await store.get_checkpoint(session, run_id, version)
    manifest = CheckpointManifest.model_validate(record.manifest)
    # Every file's sha256: the generator verifies each one it will read (every shard, the index).
    return SwapRequest(version=version, path=record.path, run_id=run_id, checksums=manifest.files, mode=manifest.mode)


async def base_folder(config: RunConfig) -> str:
    """The run's base model as a folder the generator reads (a Hub id: its snapshot on the shared cache),
    resolved off the event loop: the first resolve of a Hub id may download it."""
    try:
        return await asyncio.to_thread(resolve_model, config.model, config.model_revision)
    except ModelError as exc:
        if exc.transient:
            raise ProblemError(503, "Model hub unreachable", str(exc)) from exc
        raise ProblemError(400, "Base model unusable", str(exc)) from exc


async def swap_to(
    session: AsyncSession,
    control: FleetControl,
    run_id: str,
    version: int,
    timeout_s: float,
    transport: Literal["disk", "nccl"] = "disk",
) -> SwapResult:
    """Serve it on every replica, in parallel, without restarting vLLM. It succeeds when any replica serves
    it (the others are benched until the reconciler brings them up); when none does, the old weights keep
    serving everywhere and the error is the first replica's."""
    request = await swap_request(session, run_id, version)
    if transport == "nccl" and version > 0:  # the trainer pushed the weights: replicas record the version
        request = request.model_copy(update={"transport": "nccl"})
    started = time.perf_counter()
    outcomes = await control.swap(request, timeout_s)
    replicas = [
        ReplicaSwap(url=o.url, served=o.served, seconds=o.seconds, error=None if o.error is None else repr(o.error))
        for o in outcomes
    ]
    served = next((o.served for o in outcomes if o.served is not None), None)
    if served is not None:
        return SwapResult(served=served, seconds=time.perf_counter() - started, replicas=replicas)
    if not outcomes:
        raise ProblemError(503, "Generator unavailable", f"{control.generators.spec} names no replica now")
    raise _problem(outcomes[0].error, timeout_s)


def _problem(exc: Exception | None, timeout_s: float) -> ProblemError:
    """A replica's failure as the gateway reports it (its 400 / 409 / 504 pass through)."""
    if isinstance(exc, ServiceError):
        return ProblemError(
            exc.status if exc.status in (400, 409, 504) else 502,
            str(exc.problem.get("title", "Swap failed")),
            str(exc.problem.get("detail", "")),
        )
    if isinstance(exc, (httpx.ReadTimeout, httpx.WriteTimeout)):  # it took the request: the answer is late
        detail = f"no answer within {timeout_s:g}s ({exc!r}); it may still finish the swap: check GET /v1/generator"
        return ProblemError(504, "Swap timed out", detail)
    return ProblemError(503, "Generator unavailable", repr(exc))

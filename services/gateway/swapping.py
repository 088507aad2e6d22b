"""Point the generator at a run's checkpoint (or, for version 0, its base model) and report how it went."""

from __future__ import annotations

import asyncio
import time

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from services.gateway import store
from shared.api import SwapResult
from shared.clients.generator import GeneratorClient
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
    session: AsyncSession, generator: GeneratorClient, run_id: str, version: int, timeout_s: float
) -> SwapResult:
    """Serve it without restarting vLLM; on failure the old weights keep serving and the error says why."""
    request = await swap_request(session, run_id, version)
    started = time.perf_counter()
    try:
        served = await generator.swap(request, timeout_s)
    except ServiceError as exc:
        raise ProblemError(
            exc.status if exc.status in (400, 504) else 502,
            str(exc.problem.get("title", "Swap failed")),
            str(exc.problem.get("detail", "")),
        ) from exc
    except (httpx.ReadTimeout, httpx.WriteTimeout) as exc:  # it took the request: the answer is late
        detail = f"no answer within {timeout_s:g}s ({exc!r}); it may still finish the swap: check GET /v1/generator"
        raise ProblemError(504, "Swap timed out", detail) from exc
    except httpx.HTTPError as exc:
        raise ProblemError(503, "Generator unavailable", repr(exc)) from exc
    return SwapResult(served=served, seconds=time.perf_counter() - started)

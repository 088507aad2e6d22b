"""The generator's weights: which policy it serves, and hot-swap to a run's checkpoint."""

from __future__ import annotations

import time

import httpx
from fastapi import APIRouter

from services.gateway import store
from services.gateway.deps import GeneratorDep, SessionDep, SettingsDep
from shared.api import SwapCommand, SwapResult
from shared.clients.http import ServiceError
from shared.config import RunConfig
from shared.modeling import resolve_model
from shared.problems import ProblemError
from shared.schemas import CheckpointManifest, PolicyVersion, SwapRequest, WeightMode

router = APIRouter(prefix="/v1/generator", tags=["generator"])


@router.get("/weights", response_model=PolicyVersion, responses={503: {}})
async def served_weights(generator: GeneratorDep) -> PolicyVersion:
    try:
        return await generator.policy()
    except (httpx.HTTPError, ServiceError) as exc:
        raise ProblemError(503, "Generator unavailable", str(exc)) from exc


@router.post("/weights", response_model=SwapResult, responses={400: {}, 404: {}, 502: {}, 503: {}, 504: {}})
async def swap_weights(
    command: SwapCommand, session: SessionDep, generator: GeneratorDep, settings: SettingsDep
) -> SwapResult:
    """Serve a run's checkpoint (or, for version 0, its base model) without restarting vLLM."""
    run = await store.get_run(session, command.run_id)
    mode = WeightMode.full  # version 0 is the base model, whatever the run trains
    if command.version == 0:
        path, checksum = resolve_model(RunConfig.model_validate(run.config).model), None
    else:
        record = await store.get_checkpoint(session, command.run_id, command.version)
        manifest = CheckpointManifest.model_validate(record.manifest)
        mode = manifest.mode
        weights = "adapter_model.safetensors" if mode is WeightMode.lora else "model.safetensors"
        path, checksum = record.path, manifest.files.get(weights)
    request = SwapRequest(version=command.version, path=path, run_id=command.run_id, checksum=checksum, mode=mode)
    started = time.perf_counter()
    try:
        served = await generator.swap(request, settings.swap_timeout_s)
    except ServiceError as exc:
        raise ProblemError(
            exc.status if exc.status in (400, 504) else 502,
            str(exc.problem.get("title", "Swap failed")),
            str(exc.problem.get("detail", "")),
        ) from exc
    except httpx.HTTPError as exc:
        raise ProblemError(503, "Generator unavailable", repr(exc)) from exc
    return SwapResult(served=served, seconds=time.perf_counter() - started)

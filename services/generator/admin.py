"""The generator's admin app: swap, hold and policy routes on their own port, apart from inference.

A deployment exposes the inference port (vLLM's OpenAI routes) to clients and the admin port only to
the gateway and the trainer; with ``POP_GENERATOR_ADMIN_TOKEN`` set, every admin route but the probes
also wants that bearer token. The weight-reload RPC itself is never exposed over HTTP at all.
"""

from __future__ import annotations

import asyncio
import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from services.generator.swap import SwapError, WeightSwapper
from shared.modeling.signature import ServedModel
from shared.problems import ProblemError, document_problems, install_problem_handlers, problem
from shared.schemas import Admission, GenerationHold, HoldRequest, PolicyVersion, SwapRequest

HEALTH_TIMEOUT_S = 5.0


def get_swapper(request: Request) -> WeightSwapper:
    swapper: WeightSwapper = request.app.state.swapper
    return swapper


Swapper = Annotated[WeightSwapper, Depends(get_swapper)]


def require_token(request: Request) -> None:
    """The admin token, when one is set, as ``Authorization: Bearer <token>`` (compared in constant time)."""
    token: str | None = request.app.state.admin_token
    if token is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise ProblemError(
            401, "Unauthorized", "the generator's admin routes want its admin token as a bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )  # fmt: skip


router = APIRouter(tags=["policy"], dependencies=[Depends(require_token)])
probes = APIRouter(tags=["ops"])


@router.get("/v1/policy", response_model=PolicyVersion)
async def served_policy(swapper: Swapper) -> PolicyVersion:
    """The policy version this generator serves now, and whether it takes inference work."""
    return swapper.policy()


@router.put("/v1/policy/admission", response_model=PolicyVersion)
async def set_admission(body: Admission, swapper: Swapper) -> PolicyVersion:
    """Take inference work again, or refuse it (503) until this replica is brought to the fleet's version."""
    swapper.admit(body.admitted, "told by the gateway")
    return swapper.policy()


@router.get("/v1/policy/model", response_model=ServedModel)
async def served_model(swapper: Swapper) -> ServedModel:
    """The served base model and its signature: what a checkpoint must match to be swapped in place."""
    return swapper.served_model()


@router.post("/v1/policy/swap", response_model=PolicyVersion, responses={400: {}, 409: {}, 500: {}, 504: {}})
async def swap_policy(body: SwapRequest, swapper: Swapper) -> PolicyVersion | JSONResponse:
    """Load a checkpoint from disk and serve it, without a restart or a drain; the old one serves on failure,
    and one that does not fit the served model is refused (409) before anything is paused."""
    try:
        await swapper.swap(body)
    except SwapError as exc:
        return problem(exc.status, exc.title, exc.detail, served_version=swapper.current.version)
    swapper.admit(True, f"serving v{body.version} as the gateway asked")  # what the fleet serves: take work
    return swapper.policy()


@router.post("/v1/policy/hold", response_model=GenerationHold)
async def hold_generation(body: HoldRequest, swapper: Swapper) -> GenerationHold:
    """Pause generation for a colocated trainer's update (requests wait in place), for at most ``seconds``."""
    await swapper.hold(body.seconds)
    return GenerationHold(held=True, seconds=body.seconds)


@router.delete("/v1/policy/hold", response_model=GenerationHold)
async def release_generation(swapper: Swapper) -> GenerationHold:
    """Resume generation; idempotent."""
    await swapper.release()
    return GenerationHold(held=False)


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    """vLLM's registry (its engine metrics and ours, ``pop_generator_*``), as the inference port serves it."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
    from vllm.v1.metrics.prometheus import get_prometheus_registry

    return Response(generate_latest(get_prometheus_registry()), media_type=CONTENT_TYPE_LATEST)


async def _engine_failure(swapper: WeightSwapper) -> str | None:
    try:
        await asyncio.wait_for(swapper.engine.check_health(), HEALTH_TIMEOUT_S)
    except Exception as exc:  # EngineDeadError, or no answer in time
        return f"{type(exc).__name__}: {exc}"
    return None


@probes.get("/healthz", responses={503: {}})
async def healthz(swapper: Swapper) -> JSONResponse:
    """Alive while the engine answers its health check (vLLM's ``/health`` without the instrumentation)."""
    failure = await _engine_failure(swapper)
    if failure is not None:
        return problem(503, "Engine unhealthy", failure)
    return JSONResponse({"status": "ok"})


@probes.get("/readyz", responses={503: {}})
async def ready(swapper: Swapper) -> JSONResponse:
    """Ready when the engine answers and the served weights are whole."""
    if not swapper.healthy:
        return problem(503, "Generator unhealthy", "a failed swap could not restore the old weights")
    failure = await _engine_failure(swapper)
    if failure is not None:
        return problem(503, "Engine unhealthy", failure)
    return JSONResponse({"status": "ok", "version": swapper.current.version})


def create_admin_app(swapper: WeightSwapper, token: str | None, weight_transfer: bool = False) -> FastAPI:
    """``weight_transfer``: vLLM's own RL routes (``/init_weight_transfer_engine``, ``/start_weight_update``,
    ``/update_weights``, ``/finish_weight_update``, ``/weight_info`` ...) for the trainer's NCCL broadcast,
    here behind the admin token instead of on the inference port under VLLM_SERVER_DEV_MODE."""
    app = FastAPI(title="POP generator admin", docs_url=None, redoc_url=None)
    app.state.swapper, app.state.admin_token = swapper, token or None
    install_problem_handlers(app)
    document_problems(app)
    app.include_router(probes)
    app.include_router(router)
    if weight_transfer:
        from vllm.entrypoints.rl.online.api_router import router as rl_router

        app.state.engine_client = swapper.engine  # what vLLM's RL routes call
        app.include_router(rl_router, dependencies=[Depends(require_token)], include_in_schema=False)
    return app

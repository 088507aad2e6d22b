"""The generator: which policy it serves, its health, and hot-swap to any run's checkpoint."""

from __future__ import annotations

import httpx
from fastapi import APIRouter

from services.gateway import swapping
from services.gateway.deps import FleetDep, GeneratorDep, SessionDep, SettingsDep
from services.gateway.routes.responses import problems
from shared.api import GeneratorStatus, SwapCommand, SwapResult
from shared.clients.http import ServiceError
from shared.problems import ProblemError
from shared.schemas import PolicyVersion

router = APIRouter(prefix="/v1/generator", tags=["generator"])
SWAP_ERRORS = problems(
    _400="The generator refused the checkpoint (missing files, bad checksum), or the run's base model does not "
    "resolve (version 0)",
    _409="The checkpoint does not fit the model the generator serves (architecture, shapes, vocabulary)",
    _404="No such run or checkpoint",
    _502="The swap failed; the old weights keep serving",
    _503="The generator is unreachable, or the model hub (for a version 0 not in the cache yet)",
    _504="The swap timed out; the old weights keep serving",
)


@router.get("", response_model=GeneratorStatus)
async def generator_status(generator: GeneratorDep, control: FleetDep) -> GeneratorStatus:
    """Each replica: whether it answers, takes work, serves whole weights and the fleet's version (200 even
    when down)."""
    replicas = await control.replicas()
    status = GeneratorStatus(
        url=generator.spec,
        healthy=bool(replicas) and all(r.healthy for r in replicas),
        ready=bool(replicas) and all(r.ready and r.admitted and r.current for r in replicas),
        replicas=replicas,
    )
    try:
        status.served = await generator.policy()
    except (httpx.HTTPError, ServiceError) as exc:
        status.error = repr(exc)
    return status


@router.get("/weights", response_model=PolicyVersion, responses=problems(_503="The generator is unreachable"))
async def served_weights(generator: GeneratorDep) -> PolicyVersion:
    """What the fleet serves (what most replicas serve)."""
    try:
        return await generator.policy()
    except (httpx.HTTPError, ServiceError) as exc:
        raise ProblemError(503, "Generator unavailable", str(exc)) from exc


@router.post("/weights", response_model=SwapResult, responses=SWAP_ERRORS)
async def swap_weights(
    command: SwapCommand, session: SessionDep, control: FleetDep, settings: SettingsDep
) -> SwapResult:
    """Serve a run's checkpoint (or, for version 0, its base model) on every replica, without restarting vLLM."""
    return await swapping.swap_to(
        session, control, command.run_id, command.version, settings.swap_timeout_s, command.transport
    )

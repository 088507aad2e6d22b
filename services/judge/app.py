"""The judge's HTTP API: ``POST /v1/grade`` one group at a time (see shared.schemas)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse

from services.judge.grader import EndpointRefused, Grader, RubricError
from shared.clients.fleet import fleet_check
from shared.clients.llm import ChatClient
from shared.hosts import HostAllowlist
from shared.limits import BodyLimit
from shared.observability import instrument, metrics_response, readiness
from shared.problems import ProblemError, document_problems, install_problem_handlers
from shared.schemas import SCHEMA_VERSION, GradeRequest, GradeResponse
from shared.settings import JudgeSettings


def get_grader(request: Request) -> Grader:
    grader: Grader = request.app.state.grader
    return grader


def create_app(settings: JudgeSettings | None = None) -> FastAPI:
    settings = settings or JudgeSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        llm = ChatClient(
            settings.llm_base_url,
            settings.llm_model,
            settings.llm_api_key,
            settings.request_timeout_s,
            settings.max_parallel,
            settings.structured_output,
        )
        app.state.grader = Grader(
            llm,
            settings.retries,
            settings.retry_temperature,
            allow_endpoints=settings.allow_request_endpoints,
            allowed_hosts=HostAllowlist(settings.allowed_hosts, "POP_JUDGE_ALLOWED_HOSTS"),
        )
        yield
        await app.state.grader.aclose()

    app = FastAPI(title="POP judge", version=SCHEMA_VERSION, lifespan=lifespan)
    install_problem_handlers(app)
    document_problems(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    registry = instrument(app, "judge")
    # Ready while its LLM endpoint answers (for a fleet: any replica).
    llm_models = fleet_check(settings.llm_base_url, "/models", {"Authorization": f"Bearer {settings.llm_api_key}"})

    @app.post("/v1/grade", response_model=GradeResponse, responses={403: {}, 422: {}, 502: {}})
    async def grade(body: GradeRequest, grader: Annotated[Grader, Depends(get_grader)]) -> GradeResponse:
        """Write the rubric (unless given) and grade every answer; invalid answers have no score."""
        if body.schema_version != SCHEMA_VERSION:
            raise ProblemError(422, "Unsupported schema version", f"judge speaks {SCHEMA_VERSION}")
        try:
            return await grader.grade(body)
        except EndpointRefused as exc:
            raise ProblemError(exc.status, "Teacher endpoint refused", str(exc)) from exc
        except RubricError as exc:
            raise ProblemError(502, "Rubric not written", str(exc)) from exc

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "schema_version": SCHEMA_VERSION}

    @app.get("/readyz", responses={503: {}})
    async def readyz() -> JSONResponse:
        """Ready when the judging LLM endpoint answers (teachers a request names are not probed)."""
        return await readiness({"llm": llm_models})

    @app.get("/metrics", include_in_schema=False)
    async def metrics(grader: Annotated[Grader, Depends(get_grader)]) -> Response:
        return metrics_response(registry, grader.stats.registry())

    @app.get("/v1/stats")
    async def stats(grader: Annotated[Grader, Depends(get_grader)]) -> dict[str, object]:
        return grader.stats.as_dict()

    return app

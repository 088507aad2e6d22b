"""schemathesis against the gateway's and the judge's own OpenAPI specs, over real HTTP to the real
services (the gateway on SQLite and Redis with the tiny vLLM generator; the judge writing rubrics with
it): no 500, every status and body as documented."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from cli.stack import free_port
from tests.processes import builtin_judge, service_process

TOKEN = "pop_fuzz-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CHECKS = [checks.status_code_conformance, checks.content_type_conformance, checks.response_schema_conformance]
FUZZ = settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@schemathesis.check
def not_an_internal_error(ctx: object, response: schemathesis.Response, case: schemathesis.Case) -> None:
    """A 502/503/504 is a documented upstream failure (the LLM, the generator); a 500 is our bug."""
    if response.status_code == 500:
        raise AssertionError(f"500 from {case.method} {case.path}: {response.text[:300]}")


@pytest.fixture(scope="module")
def gateway_url(tmp_path_factory: pytest.TempPathFactory, redis_url: str, tiny_generator_admin: str) -> Iterator[str]:
    home = tmp_path_factory.mktemp("fuzz-gateway")
    port = free_port()
    env = {
        "POP_GATEWAY_PORT": str(port),
        "POP_GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{home}/gateway.db",
        "POP_GATEWAY_GENERATOR_URL": tiny_generator_admin,
        "POP_GATEWAY_API_TOKENS": TOKEN,
        "POP_GATEWAY_ALLOWED_HOSTS": "127.0.0.1",
        "REDIS_URL": redis_url,
        "POP_MODELS_DIR": str(Path("models").resolve()),
    }
    url = f"http://127.0.0.1:{port}"
    with service_process([sys.executable, "-m", "services.gateway"], env, f"{url}/healthz", home / "gateway.log"):
        yield url


@pytest.fixture(scope="module")
def judge_url(tiny_generator_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with builtin_judge(f"{tiny_generator_url}/v1", tmp_path_factory.mktemp("fuzz-judge")) as url:
        yield url


@pytest.fixture(scope="module")
def gateway_spec(gateway_url: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{gateway_url}/openapi.json")


@pytest.fixture(scope="module")
def judge_spec(judge_url: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{judge_url}/openapi.json")


def fuzz(spec: schemathesis.BaseSchema, headers: dict[str, str] | None = None) -> list[str]:
    """Every operation of ``spec``, with generated valid and invalid requests; what failed, and how.

    (schemathesis' own pytest plugin does not run under this pytest, so each operation becomes a
    hypothesis test here.)"""
    failures = []
    for result in spec.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @FUZZ
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=headers, checks=[*CHECKS, not_an_internal_error], timeout=120)

        try:
            check()
        except Exception as exc:  # schemathesis' failure groups, with the request that caused them
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}"[:2000])
    return failures


def test_the_gateway_answers_as_documented(gateway_spec: schemathesis.BaseSchema):
    assert fuzz(gateway_spec, AUTH) == []


def test_the_judge_answers_as_documented(judge_spec: schemathesis.BaseSchema):
    assert fuzz(judge_spec) == []

"""A replica not yet admitted refuses generation (503, Retry-After) and answers everything else."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from services.generator.admission import AdmissionGate


@dataclass
class Replica:
    admitted: bool


async def ok(_request: object) -> JSONResponse:
    return JSONResponse({"ok": True})


def client(replica: Replica) -> TestClient:
    app = Starlette(routes=[Route("/v1/chat/completions", ok, methods=["POST"]), Route("/v1/models", ok)])
    app.add_middleware(AdmissionGate, swapper=replica)
    return TestClient(app)


def test_generation_waits_for_admission_and_reads_do_not():
    replica = Replica(admitted=False)
    http = client(replica)
    refused = http.post("/v1/chat/completions", json={})
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["title"] == "Replica not admitted"
    assert http.get("/v1/models").status_code == 200
    replica.admitted = True
    assert http.post("/v1/chat/completions", json={}).json() == {"ok": True}

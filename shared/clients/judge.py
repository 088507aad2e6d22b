"""Client of the judge API; any service implementing ``POST /v1/grade`` can stand behind it."""

from __future__ import annotations

from shared.clients.http import ServiceClient
from shared.schemas import GradeRequest, GradeResponse


class JudgeClient(ServiceClient):
    async def healthz(self) -> dict[str, object]:
        body = (await self.request("GET", "/healthz")).json()
        return body if isinstance(body, dict) else {}

    async def grade(self, request: GradeRequest) -> GradeResponse:
        response = await self.request("POST", "/v1/grade", json=request.model_dump(mode="json"))
        return GradeResponse.model_validate(response.json())

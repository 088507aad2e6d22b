"""Client of the generator's admin port (the OpenAI routes, on its inference port, are reached through
ChatClient)."""

from __future__ import annotations

from shared.clients.http import ServiceClient
from shared.modeling.signature import ServedModel
from shared.schemas import GenerationHold, HoldRequest, PolicyVersion, SwapRequest


class GeneratorClient(ServiceClient):
    """``base_url`` is the admin port's; ``token`` is its admin token (POP_GENERATOR_ADMIN_TOKEN), if set."""

    def __init__(self, base_url: str, timeout_s: float = 30.0, token: str | None = None) -> None:
        super().__init__(base_url, timeout_s, token)

    async def model(self) -> ServedModel:
        """The served base model and its signature (what a checkpoint must match to swap in place)."""
        return ServedModel.model_validate((await self.request("GET", "/v1/policy/model")).json())

    async def policy(self) -> PolicyVersion:
        return PolicyVersion.model_validate((await self.request("GET", "/v1/policy")).json())

    async def swap(self, request: SwapRequest, timeout_s: float) -> PolicyVersion:
        response = await self.request(
            "POST", "/v1/policy/swap", json=request.model_dump(mode="json"), timeout=timeout_s
        )
        return PolicyVersion.model_validate(response.json())

    async def hold(self, seconds: float) -> GenerationHold:
        """Pause generation (a lease of ``seconds``) while a colocated trainer updates."""
        body = HoldRequest(seconds=seconds).model_dump(mode="json")
        return GenerationHold.model_validate((await self.request("POST", "/v1/policy/hold", json=body)).json())

    async def release(self) -> GenerationHold:
        return GenerationHold.model_validate((await self.request("DELETE", "/v1/policy/hold")).json())

    async def ready(self) -> bool:
        """False when a failed swap left it unable to restore its weights (it answers 503)."""
        response = await self._http.get("/readyz")
        return response.status_code == 200

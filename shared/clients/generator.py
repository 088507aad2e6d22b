"""Client of the generator's admin port (the OpenAI routes, on its inference port, are reached through
ChatClient)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from shared.clients.fleet import Fleet
from shared.clients.http import ServiceClient, ServiceError
from shared.modeling.signature import ServedModel
from shared.schemas import Admission, GenerationHold, HoldRequest, PolicyVersion, SwapRequest


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

    async def admit(self, admitted: bool) -> PolicyVersion:
        """Let it take inference work again, or refuse it (503) until it is brought to the fleet's version."""
        body = Admission(admitted=admitted).model_dump(mode="json")
        return PolicyVersion.model_validate((await self.request("PUT", "/v1/policy/admission", json=body)).json())

    async def ready(self) -> bool:
        """False when a failed swap left it unable to restore its weights (it answers 503)."""
        response = await self._http.get("/readyz")
        return response.status_code == 200


@dataclass
class ReplicaOutcome:
    """One replica's answer to a fleet-wide call: what it serves after it, or why it failed."""

    url: str
    served: PolicyVersion | None = None
    error: Exception | None = None
    seconds: float = 0.0


class GeneratorFleet:
    """The training generator's replicas, as control sees them (their admin URLs): a swap goes to all of
    them at once, and what each serves is read from each. One URL is a fleet of one."""

    def __init__(self, spec: str, timeout_s: float = 30.0, token: str | None = None) -> None:
        self.spec, self.fleet = spec, Fleet(spec)
        self._timeout_s, self._token = timeout_s, token
        self._clients: dict[str, GeneratorClient] = {}

    async def urls(self) -> list[str]:
        return await self.fleet.refresh()

    def client(self, url: str) -> GeneratorClient:
        if url not in self._clients:
            self._clients[url] = GeneratorClient(url, timeout_s=self._timeout_s, token=self._token)
        return self._clients[url]

    async def aclose(self) -> None:
        await asyncio.gather(*(c.aclose() for c in self._clients.values()))

    async def each(self, call: Callable[[GeneratorClient], Awaitable[PolicyVersion]]) -> list[ReplicaOutcome]:
        """``call`` on every replica in parallel; a failure is recorded, never raised."""

        async def one(url: str) -> ReplicaOutcome:
            started = time.perf_counter()
            try:
                served = await call(self.client(url))
            except (httpx.HTTPError, ServiceError) as exc:
                return ReplicaOutcome(url, error=exc, seconds=time.perf_counter() - started)
            return ReplicaOutcome(url, served=served, seconds=time.perf_counter() - started)

        return list(await asyncio.gather(*(one(u) for u in await self.urls())))

    async def served_all(self) -> list[ReplicaOutcome]:
        return await self.each(lambda c: c.policy())

    async def policy(self) -> PolicyVersion:
        """What the fleet serves, for callers that think of one generator: what most replicas serve
        (a replica behind is the reconciler's to bring up). Raises as a single client would when none answers."""
        outcomes = await self.served_all()
        served = [o.served for o in outcomes if o.served is not None]
        if not served:
            error = next((o.error for o in outcomes if o.error is not None), None)
            raise error or httpx.ConnectError(f"{self.spec} names no replica")
        counts = Counter((s.run_id, s.version) for s in served)
        top = counts.most_common(1)[0][0]
        return next(s for s in served if (s.run_id, s.version) == top)

    async def hold(self, seconds: float) -> None:
        """Hold generation on every replica (a trainer colocated with all of them); the first failure raises."""
        await asyncio.gather(*(self.client(u).hold(seconds) for u in await self.urls()))

    async def release(self) -> None:
        outcomes = await asyncio.gather(*(self.client(u).release() for u in await self.urls()), return_exceptions=True)
        failed = next((o for o in outcomes if isinstance(o, BaseException)), None)
        if failed is not None:
            raise failed

    async def model(self) -> ServedModel:
        """What the fleet's replicas are built on (they share it): the first that answers says."""
        error: Exception | None = None
        for url in await self.urls():
            try:
                return await self.client(url).model()
            except (httpx.HTTPError, ServiceError) as exc:
                error = exc
        raise error or httpx.ConnectError(f"{self.spec} names no replica")

    async def ready(self) -> bool:
        """Every replica serves whole weights."""
        outcomes = await asyncio.gather(*(self.client(u).ready() for u in await self.urls()), return_exceptions=True)
        return all(o is True for o in outcomes)

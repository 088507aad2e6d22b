"""Base of the typed service clients: one httpx.AsyncClient, problem bodies raised as errors."""

from __future__ import annotations

from typing import Any

import httpx

# Idle connections are dropped well before the servers drop them (uvicorn and vLLM: 5 s): a request
# sent on a connection the server is closing at that instant fails with a ReadError, mid-run.
KEEPALIVE_S = 2.0


class ServiceError(Exception):
    """A non-2xx answer; ``problem`` holds the RFC 9457 body when the service sent one."""

    def __init__(self, status: int, problem: dict[str, Any], url: str) -> None:
        self.status, self.problem, self.url = status, problem, url
        super().__init__(f"{status} from {url}: {problem.get('title', '')} {problem.get('detail', '')}".strip())


class ServiceClient:
    def __init__(self, base_url: str, timeout_s: float = 30.0, token: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else None
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=timeout_s,
            headers=headers,
            limits=httpx.Limits(keepalive_expiry=KEEPALIVE_S),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = await self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {"detail": response.text[:500]}
            raise ServiceError(response.status_code, body if isinstance(body, dict) else {"detail": body}, path)
        return response

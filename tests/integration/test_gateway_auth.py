"""Bearer tokens on the gateway: from settings or the database (stored as SHA-256 only), required for
every change, for reads when configured, never for health checks."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
from sqlalchemy import select

from services.gateway.auth import digest
from shared.db import Database, TokenRecord
from shared.settings import GatewaySettings
from tests.integration.conftest import gateway_client
from tests.integration.test_gateway_api import assert_problem

SECRET = "pop_settings-secret"


def settings(database_url: str, redis_url: str, **overrides: object) -> GatewaySettings:
    return GatewaySettings(
        database_url=database_url, generator_url="http://127.0.0.1:9", redis_url=redis_url, **overrides
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_unauthorized(response: httpx.Response) -> None:
    assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_changes_need_a_settings_token_reads_do_not(database_url: str, redis_url: str):
    async with gateway_client(settings(database_url, redis_url, api_tokens=SECRET)) as api:
        assert_unauthorized(await api.post("/v1/runs", json={"model": "pop/tiny"}))
        assert_unauthorized(await api.post("/v1/runs", json={"model": "pop/tiny"}, headers=bearer("pop_wrong")))
        assert_unauthorized(await api.post("/v1/runs", json={}, headers={"Authorization": f"Basic {SECRET}"}))
        assert_unauthorized(await api.post("/v1/runs/claim", json={"trainer": "t0"}))
        assert_unauthorized(await api.delete("/v1/runs/any"))  # before the 404: nothing leaks to strangers
        assert (await api.get("/v1/runs")).json()["total"] == 0  # nothing was created

        created = await api.post("/v1/runs", json={"model": "pop/tiny"}, headers=bearer(SECRET))
        assert created.status_code == 201
        assert (await api.get(f"/v1/runs/{created.json()['id']}")).status_code == 200
        assert (await api.get("/metrics")).status_code == 200
        assert (await api.get("/healthz")).status_code == 200
        assert_unauthorized(await api.get("/v1/tokens"))  # token metadata is never public


async def test_reads_need_a_token_when_configured(database_url: str, redis_url: str):
    hashed = hashlib.sha256(SECRET.encode()).hexdigest()
    async with gateway_client(settings(database_url, redis_url, api_token_hashes=hashed, auth_reads=True)) as api:
        for path in ("/v1/runs", "/v1/judges", "/v1/generator", "/metrics"):
            assert_unauthorized(await api.get(path))
        assert (await api.get("/v1/runs", headers=bearer(SECRET))).status_code == 200
        assert (await api.get("/healthz")).status_code == 200


async def test_database_tokens_are_hashed_at_rest_and_revocable(database_url: str, redis_url: str, tmp_path: Path):
    async with gateway_client(settings(database_url, redis_url)) as api:
        # An open gateway: anyone may create the first token, which closes it.
        assert (await api.post("/v1/runs", json={"model": "pop/tiny"})).status_code == 201
        issued = await api.post("/v1/tokens", json={"name": "trainer"})
        assert issued.status_code == 201
        token = issued.json()["token"]
        assert token.startswith("pop_") and len(token) > 40
        assert_unauthorized(await api.post("/v1/runs", json={"model": "pop/tiny"}))
        assert (await api.post("/v1/runs", json={"model": "pop/tiny"}, headers=bearer(token))).status_code == 201

        second = (await api.post("/v1/tokens", json={"name": "ci"}, headers=bearer(token))).json()
        listed = (await api.get("/v1/tokens", headers=bearer(token))).json()
        assert [t["name"] for t in listed] == ["trainer", "ci"] and all("token" not in t for t in listed)
        assert_problem(await api.post("/v1/tokens", json={"name": ""}, headers=bearer(token)), 422)

        revoked = await api.delete(f"/v1/tokens/{second['id']}", headers=bearer(token))
        assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
        assert_unauthorized(await api.post("/v1/runs", json={"model": "pop/tiny"}, headers=bearer(second["token"])))
        assert_problem(await api.delete("/v1/tokens/999999", headers=bearer(token)), 404)

    db = Database(database_url)
    async with db.session() as session:
        stored = list(await session.scalars(select(TokenRecord.token_hash)))
    await db.dispose()
    assert digest(token) in stored and token not in stored and all(len(h) == 64 for h in stored)

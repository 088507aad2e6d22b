"""The real vLLM generator (tiny model) with an admin token: control answers only on the admin port and
only with the token; the inference port refuses every control route (ours and vLLM's). A swap to a
checkpoint of another shape is refused with 409 before anything pauses, and the replica serves on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shared.clients.generator import GeneratorClient
from shared.clients.http import ServiceError
from shared.schemas import SwapRequest
from tests.integration.checkpoints import wider_tiny
from tests.processes import Generator, checkpoint_root, tiny_generator

TOKEN = "admin-secret"
CHAT = {"model": "policy", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4}
CONTROL = [
    ("GET", "/v1/policy"), ("GET", "/v1/policy/model"), ("POST", "/v1/policy/swap"), ("POST", "/v1/policy/hold"),
    ("DELETE", "/v1/policy/hold"),
]  # fmt: skip
VLLM_CONTROL = [("POST", "/scale_elastic_ep"), ("POST", "/pause"), ("POST", "/collective_rpc"),
                ("POST", "/reset_prefix_cache"), ("POST", "/sleep"), ("POST", "/update_weights"),
                ("POST", "/v1/load_lora_adapter")]  # fmt: skip


@pytest.fixture(scope="module")
def generator_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("admin-generator")


@pytest.fixture(scope="module")
def generator(generator_dir: Path) -> Iterator[Generator]:
    with tiny_generator(generator_dir, admin_token=TOKEN) as running:
        yield running


def test_control_answers_on_the_admin_port_only_and_only_with_the_token(generator: Generator):
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(timeout=30) as client:
        for method, path in [*CONTROL, *VLLM_CONTROL]:
            refused = client.request(method, f"{generator.url}{path}", json={}, headers=bearer)
            assert refused.status_code == 404, (method, path, refused.status_code)
        for method, path in [*CONTROL, ("GET", "/metrics")]:
            denied = client.request(method, f"{generator.admin}{path}", json={})
            assert denied.status_code == 401 and denied.json()["title"] == "Unauthorized", (method, path)
            wrong = client.request(method, f"{generator.admin}{path}", json={}, headers={"Authorization": "Bearer x"})
            assert wrong.status_code == 401, (method, path)
        policy = client.get(f"{generator.admin}/v1/policy", headers=bearer)
        assert policy.status_code == 200 and policy.json()["version"] == 0
        assert "pop_generator_policy_version" in client.get(f"{generator.admin}/metrics", headers=bearer).text
        for base in (generator.url, generator.admin):  # probes stay open on both ports
            assert client.get(f"{base}/healthz").status_code == 200
            assert client.get(f"{base}/readyz").json()["status"] == "ok"
        chat = client.post(f"{generator.url}/v1/chat/completions", json=CHAT)
        assert chat.status_code == 200 and chat.headers["X-Policy-Version"] == "0"
        assert client.post(f"{generator.admin}/v1/chat/completions", json=CHAT, headers=bearer).status_code == 404


async def test_a_checkpoint_of_another_shape_is_refused_and_the_replica_serves_on(
    generator: Generator, generator_dir: Path
):
    wide = wider_tiny(checkpoint_root(generator_dir) / "other-model" / "v000001")
    admin = GeneratorClient(generator.admin, timeout_s=60, token=TOKEN)
    try:
        served = await admin.model()
        assert served.served_name == "policy" and served.signature.config["hidden_size"] == 128
        assert "model.embed_tokens.weight" in served.signature.tensors
        with pytest.raises(ServiceError) as refused:
            await admin.swap(SwapRequest(version=1, run_id="other", path=str(wide)), timeout_s=120)
        assert refused.value.status == 409
        assert refused.value.problem["title"] == "Checkpoint does not fit the served model"
        assert refused.value.problem["detail"].startswith("hidden_size: served 128, checkpoint 64")
        assert refused.value.problem["served_version"] == 0
        assert (await admin.policy()).version == 0 and await admin.ready()
    finally:
        await admin.aclose()
    async with httpx.AsyncClient(timeout=60) as client:
        assert (await client.post(f"{generator.url}/v1/chat/completions", json=CHAT)).status_code == 200
        assert (await client.get(f"{generator.url}/readyz")).status_code == 200

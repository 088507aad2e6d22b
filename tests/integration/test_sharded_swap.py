"""A served version written as several safetensors shards with an index swaps into the real vLLM
generator (tiny model); one whose shard changed after its manifest was written is refused before the
served weights are touched, and the version before it keeps serving."""

from __future__ import annotations

from pathlib import Path
from uuid import uuid4

import httpx

from services.trainer.checkpoint import save_checkpoint
from services.trainer.policy import Policy
from shared.config import GRPOConfig, TrainerConfig
from shared.modeling import resolve_model
from tests.integration.groups import MIXED_REWARDS, make_group

PROBE = {"model": "policy", "messages": [{"role": "user", "content": "Name an organ."}], "max_tokens": 6,
         "temperature": 0.0, "logprobs": True}  # fmt: skip


async def probe(client: httpx.AsyncClient, url: str) -> list[float]:
    reply = (await client.post(f"{url}/v1/chat/completions", json=PROBE)).raise_for_status().json()
    return [t["logprob"] for t in reply["choices"][0]["logprobs"]["content"]]


def write_version(policy: Policy, root: Path, run_id: str, version: int) -> tuple[Path, dict[str, str]]:
    policy.update([make_group(policy, rewards, with_logprobs=True) for rewards in MIXED_REWARDS])
    path, manifest = save_checkpoint(
        policy.model, policy.tokenizer, root, run_id, version, version, "pop/tiny", shard_size="300KB"
    )
    assert len(list(path.glob("model-*.safetensors"))) > 2 and (path / "model.safetensors.index.json").is_file()
    return path, manifest.files


async def test_a_sharded_version_swaps_in_and_a_corrupted_shard_is_refused(
    tiny_generator_url: str, tiny_generator_admin: str, tiny_generator_checkpoints: Path
):
    url, admin, run_id = tiny_generator_url, tiny_generator_admin, f"sharded-{uuid4().hex[:8]}"
    policy = Policy("pop/tiny", TrainerConfig(algorithm=GRPOConfig(), learning_rate=5e-2))
    v1, v1_files = write_version(policy, tiny_generator_checkpoints, run_id, 1)
    v2, v2_files = write_version(policy, tiny_generator_checkpoints, run_id, 2)
    async with httpx.AsyncClient(timeout=180) as client:
        try:
            base = await probe(client, url)
            body = {"version": 1, "run_id": run_id, "path": str(v1), "checksums": v1_files}
            swapped = await client.post(f"{admin}/v1/policy/swap", json=body)
            assert swapped.status_code == 200, swapped.text
            served = await probe(client, url)
            assert served != base  # the shards' weights serve

            # A shard that changed on disk: refused at verification, before the engine is paused.
            shard = sorted(v2.glob("model-*.safetensors"))[1]
            data = bytearray(shard.read_bytes())
            data[-1] ^= 0xFF
            shard.write_bytes(bytes(data))
            body = {"version": 2, "run_id": run_id, "path": str(v2), "checksums": v2_files}
            refused = await client.post(f"{admin}/v1/policy/swap", json=body)
            assert refused.status_code == 400 and refused.json()["title"] == "Checkpoint checksum mismatch"
            assert shard.name in refused.json()["detail"] and refused.json()["served_version"] == 1
            # A manifest that leaves a shard out is no better than a wrong sha256.
            partial = {k: v for k, v in v2_files.items() if k != shard.name}
            unlisted = await client.post(f"{admin}/v1/policy/swap", json={**body, "checksums": partial})
            assert unlisted.status_code == 400 and shard.name in unlisted.json()["detail"]
            # An index naming a shard that is not there.
            shard.unlink()
            incomplete = await client.post(f"{admin}/v1/policy/swap", json=body)
            assert incomplete.status_code == 400 and incomplete.json()["title"] == "Checkpoint incomplete"

            policy_now = (await client.get(f"{admin}/v1/policy")).json()
            assert (policy_now["run_id"], policy_now["version"]) == (run_id, 1)
            assert await probe(client, url) == served  # the old version kept serving, untouched
        finally:
            await client.post(f"{admin}/v1/policy/swap", json={"version": 0, "path": resolve_model("pop/tiny")})

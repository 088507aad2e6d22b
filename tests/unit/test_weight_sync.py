"""Weight sync backends (``POP_*_WEIGHT_SYNC``): the settings, the refusals that name them, and the HTTP
bodies the NCCL backend sends each replica, checked against vLLM's own request dataclasses."""

from __future__ import annotations

import json

import httpx
import pytest
import torch
from pydantic import ValidationError

from services.generator.__main__ import vllm_argv
from services.trainer.__main__ import check_weight_sync
from services.trainer.transport import DiskTransport, FleetClient, make_transport, replica_init_infos, update_info
from shared.api import SwapCommand
from shared.schemas import SwapRequest, WeightMode
from shared.settings import GeneratorSettings, TrainerSettings, weight_sync_refusal

URLS = ["http://gen-0:8001", "http://gen-1:8001"]


def test_disk_is_the_default_everywhere(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("POP_TRAINER_WEIGHT_SYNC", raising=False)
    assert TrainerSettings().weight_sync == "disk" and GeneratorSettings().weight_sync == "disk"
    assert SwapCommand(run_id="r", version=1).transport == "disk"
    assert SwapRequest(version=1, path="/x").transport == "disk"
    assert "--weight-transfer-config" not in vllm_argv(GeneratorSettings(), "/m", cuda=False)
    transport = make_transport(TrainerSettings(), "r", torch.float32, WeightMode.full)
    assert isinstance(transport, DiskTransport) and transport.push(None, 1, None) is False


def test_nccl_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("POP_TRAINER_WEIGHT_SYNC", "nccl")
    monkeypatch.setenv("POP_TRAINER_WEIGHT_SYNC_URLS", ",".join(URLS))
    monkeypatch.setenv("POP_TRAINER_WEIGHT_SYNC_MASTER_ADDRESS", "10.0.0.5")
    settings = TrainerSettings()
    assert settings.weight_sync == "nccl" and settings.weight_sync_urls == URLS
    assert (settings.weight_sync_master_address, settings.weight_sync_master_port) == ("10.0.0.5", 29600)
    with pytest.raises(ValidationError, match="POP_TRAINER_WEIGHT_SYNC_URLS"):
        TrainerSettings(weight_sync="nccl", weight_sync_urls=[])
    with pytest.raises(ValidationError, match="weight_sync"):
        TrainerSettings(weight_sync="shm")


def test_nccl_without_cuda_stops_both_services_naming_the_setting():
    settings = TrainerSettings(weight_sync="nccl", weight_sync_urls=URLS)
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="POP_TRAINER_WEIGHT_SYNC=nccl needs CUDA"):
            check_weight_sync(settings)
        with pytest.raises(ValueError, match="POP_TRAINER_WEIGHT_SYNC=nccl needs CUDA"):
            make_transport(settings, "r", torch.bfloat16, WeightMode.full)
    with pytest.raises(SystemExit, match="POP_GENERATOR_WEIGHT_SYNC=nccl needs CUDA"):
        vllm_argv(GeneratorSettings(weight_sync="nccl"), "/m", cuda=False)


def test_nccl_generator_starts_vllm_with_its_weight_transfer_engine():
    argv = vllm_argv(GeneratorSettings(weight_sync="nccl"), "/m", cuda=True)
    flag = argv.index("--weight-transfer-config")
    assert json.loads(argv[flag + 1]) == {"backend": "nccl"}


def test_lora_runs_are_refused_under_nccl():
    refusal = weight_sync_refusal("POP_TRAINER_WEIGHT_SYNC", "nccl", cuda=True, lora=True)
    assert refusal is not None and "POP_TRAINER_WEIGHT_SYNC=disk" in refusal and "LoRA" in refusal
    assert weight_sync_refusal("POP_TRAINER_WEIGHT_SYNC", "nccl", cuda=True) is None
    assert weight_sync_refusal("POP_TRAINER_WEIGHT_SYNC", "disk", cuda=False, lora=True) is None


def test_each_replica_gets_its_own_ranks_after_the_trainer():
    info = {"master_address": "10.0.0.5", "master_port": 29600, "rank_offset": 1, "world_size": 4}
    assert [i["rank_offset"] for i in replica_init_infos(info, [1, 2])] == [1, 2]
    assert [i["rank_offset"] for i in replica_init_infos({**info, "world_size": 5}, [2, 2])] == [1, 3]
    with pytest.raises(ValueError, match="world size 4"):
        replica_init_infos(info, [2, 2])


def test_the_fleet_client_sends_every_replica_what_vllm_accepts():
    """The bodies go through vLLM's own builders and parsers: the worker init info it serializes, the
    update info its NCCL engine parses; each replica is asked the same, but with its own rank offset."""
    vllm = pytest.importorskip("vllm.distributed.weight_transfer.nccl_engine")
    from vllm.distributed.weight_transfer.nccl_common import NCCLWeightTransferInitInfo, worker_init_payload

    seen: list[tuple[str, str, str, object]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        seen.append((request.url.host, request.method, request.url.path, body))
        if request.url.path == "/get_world_size":
            return httpx.Response(200, json={"world_size": 1})
        return httpx.Response(200, json={"weight_version": "r:v3"} if request.url.path == "/weight_info" else {})

    client = FleetClient(URLS, "secret", 5.0, 60.0, transport=httpx.MockTransport(answer))
    assert client.discover() == [1, 1]
    sent = NCCLWeightTransferInitInfo(master_address="10.0.0.5", master_port=29600, rank_offset=1, world_size=3)
    client.init_weight_transfer_engine(worker_init_payload(sent))
    inits = {host: body for host, _, path, body in seen if path == "/init_weight_transfer_engine"}
    parsed = {host: NCCLWeightTransferInitInfo(**body["init_info"]) for host, body in inits.items()}  # type: ignore[index]
    assert {h: p.rank_offset for h, p in parsed.items()} == {"gen-0": 1, "gen-1": 2}
    assert all(p.world_size == 3 and p.master_address == "10.0.0.5" for p in parsed.values())

    payload = update_info([("a.weight", torch.bfloat16, (4, 2)), ("b.bias", torch.float32, (4,))])
    vllm.NCCLWeightTransferUpdateInfo(**payload)  # what the worker builds from the body
    client.hold()
    client.start_weight_update()
    client.update_weights(payload)
    client.tag = "r:v3"
    client.finish_weight_update()
    assert client.tags() == ["r:v3", "r:v3"]
    calls = [(m, p) for host, m, p, _ in seen if host == "gen-1"]
    assert calls[-5:] == [
        ("POST", "/v1/policy/hold"),
        ("POST", "/start_weight_update"),
        ("POST", "/update_weights"),
        ("POST", "/finish_weight_update"),
        ("GET", "/weight_info"),
    ]
    bodies = {p: b for host, _, p, b in seen if host == "gen-0"}
    assert bodies["/v1/policy/hold"] == {"seconds": 60.0}
    assert bodies["/update_weights"] == {"update_info": payload}
    assert bodies["/finish_weight_update"] == {"weight_version": "r:v3"}
    client.close()

"""What the NCCL weight sync would broadcast for the tiny model, built without CUDA: the same tensors, names,
dtype and shapes as the served version the disk backend writes, so a replica loads the same weights either way."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from services.trainer.checkpoint import save_checkpoint
from services.trainer.policy import Policy
from services.trainer.transport import served_meta, served_source, update_info
from shared.config import GRPOConfig, TrainerConfig


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy("pop/tiny", TrainerConfig(algorithm=GRPOConfig()))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_the_push_sends_what_the_served_version_holds(policy: Policy, dtype: torch.dtype, tmp_path: Path):
    path, _ = save_checkpoint(policy.model, policy.tokenizer, tmp_path, "r", 1, 1, "pop/tiny", dtype=dtype)
    with safe_open(str(path / "model.safetensors"), "pt") as f:
        on_disk = {name: (f.get_slice(name).get_dtype(), tuple(f.get_slice(name).get_shape())) for name in f.keys()}  # noqa: SIM118
    meta = served_meta(policy.model, None, dtype)
    assert len({n for n, _, _ in meta}) == len(meta)
    if policy.model.config.tie_word_embeddings:  # one tensor, sent once (vLLM skips lm_head for tied models)
        assert torch.equal(policy.model.lm_head.weight, policy.model.model.embed_tokens.weight)
        on_disk.pop("lm_head.weight", None)  # transformers drops it when the cast shares storage (fp32)
    assert {n: s for n, _, s in meta} == {n: s for n, (_, s) in on_disk.items()}
    names = {torch.bfloat16: "BF16", torch.float32: "F32"}
    assert {d for _, (d, _) in on_disk.items()} == {names[dtype]} == {names[d] for _, d, _ in meta}
    payload = update_info(meta)
    assert set(payload["dtype_names"]) == {str(dtype).removeprefix("torch.")}
    assert all(getattr(torch, d) == dtype for d in payload["dtype_names"])  # how the worker reads them back


def test_the_source_yields_what_it_declares(policy: Policy):
    """vLLM's own sender check (metadata vs iteration, parameter by parameter) passes on our source; the
    tensors are the trained weights cast to the served dtype, the gathered ones when a state dict is given."""
    nccl = pytest.importorskip("vllm.distributed.weight_transfer.nccl_engine")
    source = served_source(torch.bfloat16, device=torch.device("cpu"))
    source.bind(policy.model, None)
    meta = source.metadata()
    sent = dict(nccl.NCCLTrainerWeightTransferEngine._checked_iter(source, meta))
    params = dict(policy.model.named_parameters())
    assert sent.keys() == params.keys()
    assert all(torch.equal(sent[n], params[n].detach().to(torch.bfloat16)) for n in sent)

    gathered = {n: torch.full_like(p, 0.5, dtype=torch.float32) for n, p in policy.model.state_dict().items()}
    source.bind(policy.model, gathered)  # FSDP: rank 0's gathered copy, not its shard
    sent = dict(nccl.NCCLTrainerWeightTransferEngine._checked_iter(source, source.metadata()))
    assert all(float(t.float().mean()) == 0.5 and t.dtype == torch.bfloat16 for t in sent.values())

"""``python -m services.generator``: serve the policy with vLLM (CPU or GPU) on the inference port, and the
swap, hold and policy routes on the admin port."""

from __future__ import annotations

import os
import shlex

from shared.logs import setup_logging
from shared.modeling import ModelError, resolve_model
from shared.modeling.hub import hub_cache
from shared.modeling.registry import models_dir
from shared.settings import GeneratorSettings, reveal, weight_sync_refusal


def _cpu_environment(settings: GeneratorSettings) -> None:
    """The CPU recipe measured in shared/design/CPU-STACK.md; a GPU host ignores it."""
    import torch

    if torch.cuda.is_available():
        return
    os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(settings.kv_cache_gib))
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{max(0, (os.cpu_count() or 1) - 1)}")


def vllm_argv(settings: GeneratorSettings, model_path: str, cuda: bool | None = None) -> list[str]:
    """vLLM's command line for these settings; ``cuda``: whether this machine has a CUDA device (None: ask torch)."""
    if settings.weight_sync == "nccl":
        if cuda is None:
            import torch

            cuda = torch.cuda.is_available()
        refusal = weight_sync_refusal("POP_GENERATOR_WEIGHT_SYNC", "nccl", cuda)
        if refusal is not None:
            raise SystemExit(f"generator: {refusal}")
    argv = [
        "--model", model_path,
        "--served-model-name", settings.served_model_name,
        "--host", settings.host,
        "--port", str(settings.port),
        "--dtype", settings.dtype,
        "--max-model-len", str(settings.max_model_len),
        "--tensor-parallel-size", str(settings.tensor_parallel_size),
        "--generation-config", "vllm",
        # Weights load from safetensors only: a pickle file (.bin, .pt) next to them is never read.
        "--load-format", "safetensors",
        "--disable-uvicorn-access-log",
        # Compact JSON: without it a structured-output reply may pad with whitespace up to
        # max_tokens (a small model does), so it would never close.
        "--structured-outputs-config", '{"backend": "xgrammar", "disable_any_whitespace": true}',
    ]  # fmt: skip
    if settings.enforce_eager:
        argv.append("--enforce-eager")
    if settings.enable_lora:
        argv += ["--enable-lora", "--max-lora-rank", str(settings.max_lora_rank), "--max-loras", "2"]
    if settings.weight_sync == "nccl":
        # The engine joins the trainer's NCCL group when the trainer calls /init_weight_transfer_engine.
        argv += ["--weight-transfer-config", '{"backend": "nccl"}']
    return argv + shlex.split(settings.extra_args)


def main() -> None:
    settings = GeneratorSettings()
    setup_logging("generator", settings.log_level)
    _cpu_environment(settings)
    try:  # offline or not is the user's choice (HF_HUB_OFFLINE), as are HF_HOME and HF_TOKEN
        model_path = resolve_model(settings.model, settings.model_revision)
    except ModelError as exc:
        raise SystemExit(f"generator: POP_GENERATOR_MODEL: {exc}") from exc

    import uvloop
    from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
    from vllm.entrypoints.serve.utils.api_utils import cli_env_setup
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    from services.generator.server import AdminOptions, serve

    cli_env_setup()
    parser = make_arg_parser(FlexibleArgumentParser(description="POP generator (vLLM)"))
    args = parser.parse_args(vllm_argv(settings, model_path))
    validate_parsed_serve_args(args)
    # A swap to version 0 of a Hub model's run names its snapshot in the hub cache (files linked into blobs/).
    roots = [settings.checkpoint_root, models_dir(), hub_cache()]
    admin = AdminOptions(settings.admin_host or settings.host, settings.admin_port, reveal(settings.admin_token))
    admitted = not settings.wait_for_fleet  # a fleet's replica waits for the gateway to bring it up
    uvloop.run(serve(args, model_path, settings.swap_timeout_s, roots, admin, settings.max_lora_rank, admitted))


if __name__ == "__main__":
    main()

"""Deployment settings of every service: environment variables with a per-service prefix.

A run's knobs live in ``RunConfig``; these are the things a deployment decides (addresses,
storage, model cache). ``REDIS_URL`` / ``DATABASE_URL`` are honoured unprefixed, as twelve-factor
deployments expect.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_HOME = Path(".pop")
WeightSync = Literal["disk", "nccl"]


def _redis_field() -> str:
    return Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("redis_url", "REDIS_URL"),
        description="Redis holding the episode streams.",
    )


def _comma_separated(cls: type, value: object) -> object:
    """``a,b`` in an environment variable is the list [a, b]."""
    return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value


def _allowed_hosts_field(what: str) -> list[str]:
    return Field(
        default_factory=list,
        description=f"{what}, comma separated: names, wildcards (*.svc.cluster.local), addresses or networks "
        "(10.0.0.0/8). Empty: none (no request can make this service call a host of its choosing).",
    )


def _admin_token_field() -> SecretStr | None:
    return Field(default=None, description="The generator's admin token (POP_GENERATOR_ADMIN_TOKEN), if it has one.")


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    host: str = "127.0.0.1"
    port: int = 0
    log_level: str = "info"
    max_body_bytes: int = Field(default=1 << 20, ge=1024, description="Larger request bodies get 413.")


class GeneratorSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="POP_GENERATOR_", extra="ignore", populate_by_name=True)

    port: int = Field(default=8000, description="Inference: vLLM's OpenAI routes, /healthz, /readyz, /metrics.")
    admin_port: int = Field(
        default=8001,
        description="Control: the swap, hold and policy routes (and probes, /metrics). Expose it to the gateway "
        "and the trainer only; the inference port serves none of these.",
    )
    admin_host: str | None = Field(default=None, description="Address of the admin port; None: the same as host.")
    wait_for_fleet: bool = Field(
        default=False,
        description="A replica of a fleet: refuse generation (503, Retry-After) from the start until the gateway "
        "has brought it to the fleet's version, so no client samples from a replica behind the others.",
    )
    admin_token: SecretStr | None = Field(
        default=None,
        description="When set, every admin route but /healthz and /readyz wants it as a bearer token; the gateway "
        "(POP_GATEWAY_GENERATOR_TOKEN) and a colocated trainer (POP_TRAINER_COLOCATED_GENERATOR_TOKEN) send it.",
    )
    model: str = Field(
        default="pop/smollm2-135m-instruct",
        description="The served base: a Hub id (HF_HOME, HF_HUB_OFFLINE, HF_TOKEN apply), a folder or a pop/ alias.",
    )
    model_revision: str | None = Field(default=None, description="Branch, tag or commit of a Hub model (None: main).")
    served_model_name: str = "policy"
    dtype: str = Field(default="auto", description="vLLM dtype; float32 gives tie-free greedy tests.")
    max_model_len: int = 2048
    enforce_eager: bool = Field(default=True, description="Skip compile warm-up (~30 s vs ~2 min start).")
    kv_cache_gib: int = Field(default=1, description="VLLM_CPU_KVCACHE_SPACE on CPU.")
    swap_timeout_s: float = Field(default=120.0, description="Each hot-swap step gives up after this.")
    checkpoint_root: Path = Field(
        default=DEFAULT_HOME / "checkpoints",
        description="The trainer's checkpoint folder: swaps load only from under it, the models folder, the "
        "Hugging Face hub cache and the base model's own (symlinks resolved first).",
    )
    enable_lora: bool = Field(default=False, description="Serve LoRA adapters (runs with weight_mode: lora).")
    max_lora_rank: int = Field(default=16, description="Largest adapter rank the server accepts.")
    tensor_parallel_size: int = Field(default=1, ge=1, description="GPUs one model is sharded over (vLLM).")
    extra_args: str = Field(default="", description="Further vLLM CLI flags, space separated.")
    weight_sync: WeightSync = Field(
        default="disk",
        description="How new weights arrive (the trainer's POP_TRAINER_WEIGHT_SYNC): 'disk' reloads each version "
        "from the checkpoint folder; 'nccl' also starts vLLM's NCCL weight-transfer engine (--weight-transfer-config), "
        "so the trainer broadcasts full weights into GPU memory. Needs CUDA; LoRA adapters always load from disk.",
    )

    @field_validator("model_revision", "admin_host", "admin_token", mode="before")
    @classmethod
    def _empty_is_main(cls, value: object) -> object:
        """``POP_GENERATOR_MODEL_REVISION=`` (compose's ``${VAR:-}``) means none, not the revision ``""``;
        likewise an empty admin host or token."""
        return None if value == "" else value


class JudgeSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="POP_JUDGE_", extra="ignore", populate_by_name=True)

    port: int = 8100
    max_body_bytes: int = Field(
        default=16 << 20, ge=1024, description="Larger grade requests get 413 (a document and K answers fit)."
    )
    llm_base_url: str = Field(
        default="http://127.0.0.1:8000/v1",
        description="OpenAI-compatible endpoint that judges, or a fleet of them (a comma-separated list, or "
        "dns+http://name:port/v1): requests go to the replica with the fewest outstanding ones.",
    )
    llm_model: str = "policy"
    llm_api_key: str = "EMPTY"
    max_parallel: int = Field(default=8, ge=1, description="Concurrent requests to the LLM endpoint.")
    retries: int = Field(default=2, ge=0, description="Re-asks of a malformed rubric or verdict.")
    retry_temperature: float = Field(default=0.7, ge=0.0, description="Sampling temperature of re-asks.")
    request_timeout_s: float = 300.0
    structured_output: bool = Field(
        default=True, description="Request json_schema output from the LLM endpoint (off: schema in the prompt)."
    )
    allow_request_endpoints: bool = Field(
        default=True,
        description="Call the teacher endpoints (rubric_writer, scorer) a grade request names, on allowed "
        "hosts; turn off where requests come from untrusted callers.",
    )
    allowed_hosts: Annotated[list[str], NoDecode] = _allowed_hosts_field(
        "Hosts of the teacher endpoints a grade request may name"
    )

    _split = field_validator("allowed_hosts", mode="before")(_comma_separated)


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="POP_GATEWAY_", extra="ignore", populate_by_name=True)

    port: int = 8080
    database_url: str = Field(
        default=f"sqlite+aiosqlite:///{DEFAULT_HOME}/gateway.db",
        validation_alias=AliasChoices("database_url", "POP_GATEWAY_DATABASE_URL", "DATABASE_URL"),
    )
    generator_url: str = Field(
        default="http://127.0.0.1:8001",
        description="The training generator's admin URL, or its fleet: a comma-separated list, or "
        "dns+http://name:port for every address a name resolves to (a headless Service, compose --scale).",
    )
    generator_token: SecretStr | None = _admin_token_field()
    fleet_check_s: float = Field(
        default=2.0, gt=0, description="How often each replica is compared with the fleet's version and brought up."
    )
    redis_url: str = _redis_field()
    swap_timeout_s: float = 180.0
    api_tokens: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Bearer tokens accepted besides the database's, comma separated (from a Secret). With none "
        "here and none in the database, the API is open, and the gateway says so in its log.",
    )
    api_token_hashes: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="SHA-256 hex digests of further accepted tokens, comma separated."
    )
    auth_reads: bool = Field(default=False, description="Require a token for reads (GET) too, not only changes.")
    run_defaults: Path | None = Field(
        default=None,
        description="A YAML run config every submitted one is merged over (the submitted values win): the "
        "deployment's model, corpus or judge, set once (a ConfigMap in Kubernetes).",
    )

    allowed_hosts: Annotated[list[str], NoDecode] = _allowed_hosts_field(
        "Hosts run configs may aim the system at: external judges (judge.url, registered judges) and teacher "
        "endpoints (roles.*.base_url), and endpoints to evaluate"
    )
    eval_dir: Path = Field(
        default=DEFAULT_HOME / "evals",
        description="The folder eval sets are read from (``set.path`` is relative to it): the benchmark files "
        "a deployment offers, e.g. a mounted volume.",
    )
    eval_generator_url: str | None = Field(
        default=None,
        description="A generator kept for evals: checkpoint targets are swapped onto it, never onto the training "
        "generator. Unset: evals score endpoints only.",
    )
    eval_generator_inference_url: str | None = Field(
        default=None,
        description="The eval generator's inference port, where checkpoints are scored (eval_generator_url is its "
        "admin port, where they are swapped in). Unset: eval_generator_url serves both.",
    )
    eval_generator_model: str = Field(default="policy", description="The eval generator's served model name.")
    judge_url: str | None = Field(
        default=None, description="The deployment's judge, grading evals that name no registered judge."
    )

    _split = field_validator("api_tokens", "api_token_hashes", "allowed_hosts", mode="before")(_comma_separated)

    @field_validator(
        "eval_generator_url", "eval_generator_inference_url", "judge_url", "generator_token", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """``POP_GATEWAY_EVAL_GENERATOR_URL=`` (compose's ``${VAR:-}``) means none, not the URL ``""``."""
        return None if value == "" else value


def reveal(secret: SecretStr | None) -> str | None:
    return None if secret is None else secret.get_secret_value()


def _gateway_token_field() -> SecretStr | None:
    return Field(default=None, description="Bearer token for the gateway's API, when it requires one.")


class SelfPlaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="POP_SELFPLAY_", extra="ignore", populate_by_name=True)

    port: int = Field(default=8300, description="Ops endpoints (/healthz, /readyz, /metrics).")

    gateway_url: str = "http://127.0.0.1:8080"
    gateway_token: SecretStr | None = _gateway_token_field()
    generator_url: str = Field(
        default="http://127.0.0.1:8000",
        description="The policy's inference URL, or its fleet (a comma-separated list, or dns+http://name:port): "
        "requests go to the replica with the fewest outstanding ones.",
    )
    generator_model: str = "policy"
    judge_url: str = "http://127.0.0.1:8100"
    redis_url: str = _redis_field()
    poll_interval_s: float = 1.0
    request_timeout_s: float = 300.0


class TrainerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="POP_TRAINER_", extra="ignore", populate_by_name=True)

    port: int = Field(default=8200, description="Ops endpoints (/healthz, /readyz, /metrics), served by rank 0.")

    gateway_url: str = "http://127.0.0.1:8080"
    gateway_token: SecretStr | None = _gateway_token_field()
    redis_url: str = _redis_field()
    checkpoint_dir: Path = Field(default=DEFAULT_HOME / "checkpoints", description="Shared storage.")
    consumer_name: str = Field(default="trainer-0", description="Redis consumer name within the group.")
    poll_interval_s: float = 1.0
    read_block_ms: int = 2000
    threads: int = Field(default=0, description="torch intra-op threads; 0 leaves torch's default.")
    colocated_generator_url: str | None = Field(
        default=None,
        description="The admin URL of a generator sharing this trainer's cores or GPU (or a fleet: a list, or "
        "dns+http://name:port): generation is held on each during every update (measured on 2 CPU cores: "
        "updates ran 3-7x slower while it generated).",
    )
    colocated_generator_token: SecretStr | None = _admin_token_field()
    hold_seconds: float = Field(default=900.0, gt=0, le=3600, description="Lease of each hold; ends it if we die.")
    sharding: Literal["replicate", "fsdp"] = Field(
        default="replicate",
        description="Under several processes (accelerate launch, torchrun): 'replicate' keeps a whole model and "
        "optimizer on every rank (DDP); 'fsdp' shards weights, gradients and optimizer state over the ranks "
        "(torch FSDP2), so a model too large for one device trains. Ignored in a single process.",
    )
    served_dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto",
        description="The dtype of each served version's weights: the generator's (POP_GENERATOR_DTYPE). 'auto' "
        "is the base model's stored dtype, as vLLM's --dtype auto serves it. Training keeps fp32 master weights.",
    )
    served_shard_size: str = Field(
        default="5GB",
        description="Largest safetensors file of a served version; larger models are written as shards with "
        "an index (transformers' max_shard_size).",
    )
    retry_for_s: float = Field(
        default=600.0,
        gt=0,
        description="How long a gateway call or a stream acknowledgement is retried while what it calls restarts "
        "(the gateway, its database, Redis, the generator) before the run is failed.",
    )
    weight_sync: WeightSync = Field(
        default="disk",
        description="How each new version reaches the generators. 'disk': the gateway tells them to reload the "
        "served version this trainer wrote. 'nccl': rank 0 broadcasts the full weights (served dtype) to every "
        "replica in weight_sync_urls with vLLM's NCCL weight-transfer engine, then the gateway only records the "
        "version; the served version is still written each step (rollbacks, restarted replicas). Needs CUDA "
        "here and on the generators (POP_GENERATOR_WEIGHT_SYNC=nccl); full weights only (LoRA runs are refused).",
    )
    weight_sync_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="nccl: every generator replica's base URL for its weight-transfer and hold routes (vLLM's "
        "/init_weight_transfer_engine ... /finish_weight_update, /get_world_size, /weight_info; POP's "
        "/v1/policy/hold), comma separated: the admin port where the generator has one.",
    )
    weight_sync_token: SecretStr | None = Field(
        default=None, description="nccl: bearer token for those routes, when the generators require one."
    )
    weight_sync_master_address: str = Field(
        default="127.0.0.1",
        description="nccl: this trainer's address as the generators reach it (NCCL's rendezvous, rank 0 here).",
    )
    weight_sync_master_port: int = Field(
        default=29600, gt=0, lt=65536, description="nccl: the rendezvous port (TCP) the generators connect to."
    )

    _split = field_validator("weight_sync_urls", mode="before")(_comma_separated)

    @model_validator(mode="after")
    def _nccl_needs_replicas(self) -> Self:
        if self.weight_sync == "nccl" and not self.weight_sync_urls:
            raise ValueError(
                "POP_TRAINER_WEIGHT_SYNC=nccl needs POP_TRAINER_WEIGHT_SYNC_URLS: every generator replica's URL"
            )
        return self


def weight_sync_refusal(env: str, weight_sync: str, cuda: bool, lora: bool = False) -> str | None:
    """Why ``weight_sync`` cannot work here, naming the variable ``env`` that chose it (None: it can).

    Checked at start (a trainer or generator that cannot do what it was told stops with this, instead of
    hanging in a rendezvous later) and, for LoRA, when a run is claimed."""
    if weight_sync != "nccl":
        return None
    if not cuda:
        return f"{env}=nccl needs CUDA (NCCL broadcasts between GPUs) and this machine has none: use {env}=disk"
    if lora:
        return (
            f"{env}=nccl pushes full weights; LoRA adapters load from disk (load_lora_adapter): "
            f"use {env}=disk for weight_mode: lora"
        )
    return None

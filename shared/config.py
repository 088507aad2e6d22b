"""Run configuration: the YAML a user submits to ``POST /v1/runs``, validated field by field.

One pydantic model tree, a docstring on every field; algorithms are a discriminated union so a
config names exactly one and only that one's knobs are accepted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.schemas import Criterion, GradingMode, ModelEndpoint, WeightMode


class ConfigModel(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class FilterConfig(ConfigModel):
    """What a synthesis must pass to reach the trainer; every rejection is counted by reason."""

    min_task_words: int = Field(default=3, ge=1)
    """Tasks shorter than this are rejected as empty."""
    max_task_words: int = Field(default=120, ge=1)
    """Tasks longer than this are rejected as over-long."""
    max_reference_overlap: float = Field(default=0.5, ge=0.0, le=1.0)
    """A task that contains more than this share of the reference's word trigrams leaks the answer."""
    max_document_overlap: float = Field(default=0.8, ge=0.0, le=1.0)
    """A task (6+ words) whose word trigrams come from the document beyond this share copies it, handing the
    solver the document the method hides from it."""
    duplicate_window: int = Field(default=512, ge=0)
    """How many recent tasks a new one is compared with (0 turns the near-duplicate filter off)."""
    duplicate_jaccard: float = Field(default=0.6, gt=0.0, le=1.0)
    """Word-trigram Jaccard similarity at or above which a task is a near-duplicate."""
    boilerplate: bool = True
    """Reject documents that look like navigation, legal or repeated boilerplate (Gopher-style rules)."""
    min_valid_answers: int = Field(default=2, ge=2)
    """Groups with fewer gradeable answers are dropped."""
    min_score_range: float = Field(default=0.0, ge=0.0, le=2.0)
    """Groups whose best and worst scores differ by this much or less carry no signal and are dropped."""


class RolesConfig(ConfigModel):
    """Who plays each role. None is the policy itself (self-play); an endpoint is a teacher."""

    proposer: ModelEndpoint | None = None
    """Reads the document and writes the task and its reference."""
    solver: ModelEndpoint | None = None
    """Answers the task K times. A teacher's answers are off-policy: the trainer re-tokenizes them."""
    rubric_writer: ModelEndpoint | None = None
    """Writes the rubric from the document, the reference and a spread of the answers."""
    scorer: ModelEndpoint | None = None
    """Rates each answer on each criterion, seeing the document only through the gold facts."""


class SelfPlayConfig(ConfigModel):
    corpus: str = "builtin:sample"
    """Corpus: a JSONL file (one ``{"id", "text"}`` object a line), a ``.parquet`` file, or ``builtin:sample``."""
    id_field: str = "id"
    """Field (JSONL key or Parquet column) holding a document's id."""
    text_field: str = "text"
    """Field (JSONL key or Parquet column) holding a document's text."""
    seed: int = 0
    """Seed of the document order and the task-type sequence; the same seed draws the same documents."""
    min_doc_words: int = Field(default=50, ge=1)
    """Documents (and chunks) shorter than this are skipped (the paper: 50)."""
    max_doc_words: int = Field(default=1024, ge=16)
    """Longer documents are chunked or cut to this many words (the paper cuts at ~1,024)."""
    long_documents: Literal["chunk", "truncate"] = "chunk"
    """``chunk`` splits a long document into even chunks, each drawn on its own; ``truncate`` keeps the start."""
    task_mix: dict[str, float] = Field(default_factory=lambda: {"long_form_qa": 1.0}, min_length=1)
    """Task types and their weights; each draw's type follows the weights, seeded."""
    task_dirs: list[str] = Field(default_factory=list)
    """Directories of extra task-type YAML files (one type a file)."""
    filters: FilterConfig = Field(default_factory=FilterConfig)
    """Rejection rules for documents, tasks and groups."""
    group_size: int = Field(default=4, ge=2, le=64)
    """K: answers sampled per task (the paper: 32)."""
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    """Sampling temperature of the solver (the paper: 1.0)."""
    propose_temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    """Sampling temperature of the proposer; retries need it above 0 to differ."""
    max_task_chars: int = Field(default=400, ge=32)
    """Upper bound on a proposed task's length, enforced by the JSON schema."""
    max_reference_chars: int = Field(default=600, ge=32)
    """Upper bound on a proposed reference answer's length, enforced by the JSON schema."""
    max_answer_tokens: int = Field(default=160, ge=8)
    """Token budget of each sampled answer; when set, it overrides every task type's own default."""
    propose_retries: int = Field(default=5, ge=1, le=20)
    """Attempts to get a parseable task from a document before skipping it."""
    concurrency: int = Field(default=2, ge=1, le=64)
    """Groups a producer works on at once (keeps the generator's batch full)."""
    max_stream_groups: int = Field(default=16, ge=1)
    """Back-pressure: producers wait while the run's stream holds this many unread groups."""

    @field_validator("task_mix")
    @classmethod
    def _positive_weights(cls, mix: dict[str, float]) -> dict[str, float]:
        bad = [name for name, weight in mix.items() if not weight > 0]
        if bad:
            raise ValueError(f"task weights must be > 0: {bad}")
        return mix


class DPOConfig(ConfigModel):
    name: Literal["dpo"] = "dpo"
    beta: float = Field(default=0.01, gt=0)
    """KL strength against the frozen reference policy (the paper: 0.01)."""
    max_length_diff_words: int = Field(default=100, ge=0)
    """Pairs whose answers differ by more words than this are dropped (length-hacking guard)."""


class GRPOConfig(ConfigModel):
    name: Literal["grpo"] = "grpo"
    clip_eps: float = Field(default=0.2, gt=0)
    """PPO clip range of the importance ratio against the behaviour policy's log-probs."""
    scale_rewards: bool = True
    """Divide advantages by the group's reward std (GRPO); False keeps mean-centring only (Dr. GRPO)."""
    loss_type: Literal["grpo", "dapo", "dr_grpo"] = "grpo"
    """Token averaging: ``grpo`` per sequence then over sequences; ``dapo`` over all tokens of the batch;
    ``dr_grpo`` token sum over batch size × the answer budget (no length bias)."""
    kl_beta: float = Field(default=0.0, ge=0.0)
    """Weight of the KL penalty to the frozen starting policy (k3 estimator); 0 keeps no reference copy."""


Algorithm = Annotated[DPOConfig | GRPOConfig, Field(discriminator="name")]


class LoraConfig(ConfigModel):
    """The adapter trained when ``weight_mode`` is ``lora`` (peft); the generator must run with LoRA enabled."""

    r: int = Field(default=8, ge=1, le=256)
    """Adapter rank; at most the generator's ``POP_GENERATOR_MAX_LORA_RANK``."""
    alpha: int = Field(default=16, ge=1)
    """Scaling numerator (the update is scaled by alpha / r)."""
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    """Modules that get adapters; ``all-linear`` is every linear layer but the output head."""


class TrainerConfig(ConfigModel):
    algorithm: Algorithm = Field(default_factory=DPOConfig)
    """The update rule: ``dpo`` (the paper's best-vs-worst pairs) or ``grpo``."""
    weight_mode: WeightMode = WeightMode.full
    """``full`` fine-tunes every weight and the generator reloads them from disk; ``lora`` trains a peft
    adapter (small checkpoints) that the generator loads beside the base weights."""
    lora: LoraConfig = Field(default_factory=LoraConfig)
    """Adapter shape, used when ``weight_mode`` is ``lora``."""
    learning_rate: float = Field(default=1e-5, gt=0)
    """AdamW learning rate (the paper: 1e-6 for DPO at 7B scale)."""
    max_steps: int = Field(default=3, ge=1)
    """Number of updates; each publishes a new policy version."""
    groups_per_step: int = Field(default=2, ge=1)
    """Scored groups consumed by one update."""
    max_staleness: int = Field(default=1, ge=0)
    """Groups generated by a policy more than this many versions old are dropped."""
    max_grad_norm: float = Field(default=1.0, gt=0)
    """Gradient clipping norm."""
    micro_batch_size: int = Field(default=8, ge=1)
    """Sequences per forward/backward pass (a DPO pair is two); gradients accumulate over micro-batches, so
    memory is bounded by this while the update stays that of the whole step's batch."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """Compute precision of the forward passes. ``bf16`` is mixed precision: the forward runs under
    ``torch.autocast(bfloat16)`` while weights, gradients and AdamW's steps stay float32 (at lr ~1e-5 most
    updates are below bf16's resolution) and log-softmax and losses are float32. ``auto``: bf16 on a CUDA
    device that supports it, fp32 on CPU, where bf16 measured slower (a CPU without bf16 instructions
    converts instead; ``python -m benchmarks.update_compute``)."""
    gradient_checkpointing: bool = False
    """Recompute each decoder layer's activations in the backward pass instead of storing them (works with
    LoRA): activation memory drops to about one layer's, for about one more forward of compute."""
    reference: Literal["auto", "device", "offload"] = "auto"
    """Where full-weight DPO's (or GRPO's, with ``kl_beta`` > 0) frozen reference lives. ``device``: a float32
    copy on the training device (fast; fine for small models). ``offload``: in CPU memory in the checkpoint's
    stored dtype (bf16 for most), streamed to the device a module at a time for its forward (accelerate's
    ``cpu_offload``), so the device holds no second copy. ``auto``: offload on CUDA, device on CPU. LoRA has
    no copy (the reference is the policy with its adapter off); the offline pass computes reference log-probs
    once, before training, then frees the reference."""
    swap_after_update: bool = True
    """Ask the gateway to hot-swap the generator to each new checkpoint."""
    resume_every: int = Field(default=5, ge=1)
    """Write the resumable state (fp32 weights, optimizer, RNG, counters, stream position) every N steps, in the
    background, and at the run's last step or a pause. Stream entries are acknowledged only once such a state
    covers them, so a trainer that dies resumes from the last one and retrains what came after it (exactly
    once): a larger N writes less (7B full weights: ~91 GB of state) and redoes more after a crash."""
    keep_last: int = Field(default=0, ge=0, validation_alias=AliasChoices("keep_last", "keep_checkpoints"))
    """Keep the newest N served versions on disk (0 keeps all). A version the generator or an eval serves,
    or an unfinished eval names, is never pruned. (Formerly ``keep_checkpoints``, still accepted.)"""


class JudgeConfig(ConfigModel):
    name: str | None = None
    """A judge registered with the gateway (``POST /v1/judges``); the gateway fills in its ``url``."""
    url: str | None = None
    """An external judge service's base URL (it must implement the judge API, see docs/judge-api.md); the
    gateway checks its health and schema version before accepting the run. None: the deployment's judge."""
    grading: GradingMode = "all_at_once"
    """``all_at_once``: one scorer call per answer (cheaper); ``per_criterion``: one per criterion (more accurate)."""
    extra_criteria: list[Criterion] = Field(default_factory=list, max_length=32)
    """Criteria added to every rubric, e.g. programmatic word-count or must-mention checks (at most 32)."""
    write_rubric: bool = True
    """``False`` skips the rubric writer: each task's rubric is its stated constraints plus ``extra_criteria``
    (a fixed rubric; all-programmatic criteria make verifiable rewards with no model call in the judge)."""

    @model_validator(mode="after")
    def _fixed_rubric_has_criteria(self) -> JudgeConfig:
        if not self.write_rubric and not self.extra_criteria:
            raise ValueError("write_rubric: false needs extra_criteria: they are the whole rubric")
        return self


REVISION_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.\-/]*$"
"""A git branch, tag or commit: no spaces, no leading ``/`` or ``.``."""


class RunConfig(ConfigModel):
    name: str = Field(default="run", min_length=1, max_length=120)
    """A human label for the run."""
    model: str = Field(default="pop/smollm2-135m-instruct", min_length=1, max_length=1000)
    """The policy: a Hugging Face Hub id (``org/name``, downloaded into ``HF_HOME`` unless ``HF_HUB_OFFLINE``
    is set; ``HF_TOKEN`` for private or gated repos), a local model folder, or a built-in ``pop/...`` alias.
    The gateway refuses a run whose model does not resolve."""
    model_revision: str | None = Field(default=None, min_length=1, max_length=255, pattern=REVISION_PATTERN)
    """The Hub revision of ``model``: a branch, tag or commit hash (None: ``main``). A commit pins the same
    weights for every service even when the branch moves; Hub ids only."""
    selfplay: SelfPlayConfig = Field(default_factory=SelfPlayConfig)
    roles: RolesConfig = Field(default_factory=RolesConfig)
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)

    @field_validator("model_revision")
    @classmethod
    def _no_parent_steps(cls, revision: str | None) -> str | None:
        if revision is not None and ".." in revision:  # git refuses it, and it would climb out of the cache
            raise ValueError("a revision cannot contain '..'")
        return revision

    @classmethod
    def from_yaml(cls, text: str) -> RunConfig:
        data: Any = yaml.safe_load(text) or {}
        if not isinstance(data, dict):
            raise ValueError("a run config must be a YAML mapping")
        return cls.model_validate(data)

    @classmethod
    def from_file(cls, path: str | Path) -> RunConfig:
        return cls.from_yaml(Path(path).read_text())

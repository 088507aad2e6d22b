"""``/v1/evals``: what a user sends to have checkpoints or endpoints scored on an eval set, and what
the gateway keeps and returns. An eval is a job: accepted at once (202), run in the background,
read back by id or listed next to its run."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import Discriminator, Field, Tag, model_validator

from shared.api import JUDGE_NAME, MAX_INT, ApiModel
from shared.evaluation import EvalReport, Interval
from shared.schemas import Criterion

LABEL = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$"


class EvalFormat(StrEnum):
    ifeval = "ifeval"
    """Prompts with verifiable instructions, graded by their checks (no judge)."""
    healthbench = "healthbench"
    """Conversations with rubric items (points, tags), graded by the judge."""
    heldout = "heldout"
    """Held-out self-play tasks (id, task_type, prompt), answered as the solver answers and graded by the judge
    against fixed criteria."""


class EvalSet(ApiModel):
    format: EvalFormat
    path: str | None = Field(
        default=None,
        min_length=1,
        max_length=500,
        description="A JSONL file under the gateway's eval folder (POP_GATEWAY_EVAL_DIR), relative to it; "
        "null: the sample set bundled with the project.",
    )
    limit: int | None = Field(default=None, ge=1, le=100_000, description="Only the first this many items.")


class EndpointTarget(ApiModel):
    """Any OpenAI-compatible chat endpoint, as it serves now."""

    kind: Literal["endpoint"] = "endpoint"
    label: str = Field(pattern=LABEL, description="The report's name for it.")
    base_url: str = Field(pattern=r"^https?://", max_length=500, description="Ends in /v1, as OpenAI clients take it.")
    model: str = Field(default="policy", min_length=1, max_length=200, description="The model name to ask for.")


class CheckpointTarget(ApiModel):
    """A run's checkpoint, served for the eval by the gateway's eval generator, never the training one."""

    kind: Literal["checkpoint"] = "checkpoint"
    label: str | None = Field(default=None, pattern=LABEL, description="Default: ``v{version}``.")
    run_id: str = Field(min_length=1, max_length=32)
    version: int = Field(ge=0, le=MAX_INT, description="0: the run's base model.")

    @property
    def name(self) -> str:
        return self.label or f"v{self.version}"


def _kind(value: Any) -> str:
    """A target without ``kind`` is an endpoint (the common case needs no tag)."""
    kind = value.get("kind", "endpoint") if isinstance(value, dict) else getattr(value, "kind", "endpoint")
    return str(kind)


EvalTarget = Annotated[
    Annotated[EndpointTarget, Tag("endpoint")] | Annotated[CheckpointTarget, Tag("checkpoint")],
    Discriminator(_kind),
]


def target_label(target: EndpointTarget | CheckpointTarget) -> str:
    return target.label if isinstance(target, EndpointTarget) else target.name


class EvalSampling(ApiModel):
    n: int = Field(default=1, ge=1, le=64, description="Answers a prompt.")
    max_tokens: int = Field(default=512, ge=1, le=32768)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    seed: int = Field(default=0, ge=0, le=MAX_INT, description="Answers to prompt i are sampled with seed + i.")


class EvalCreate(ApiModel):
    set: EvalSet
    targets: list[EvalTarget] = Field(min_length=1, max_length=8, description="Scored side by side, in this order.")
    run_id: str | None = Field(
        default=None,
        max_length=32,
        description="The run whose dashboard shows the results; default: the first checkpoint target's run.",
    )
    judge: str | None = Field(
        default=None,
        pattern=JUDGE_NAME,
        description="A registered judge's name; default: the deployment's (POP_GATEWAY_JUDGE_URL). Unused by ifeval.",
    )
    criteria: list[Criterion] | None = Field(
        default=None,
        max_length=32,
        description="heldout: the criteria every answer is graded on; default: the run's ``judge.extra_criteria``.",
    )
    sampling: EvalSampling = Field(default_factory=EvalSampling)

    @model_validator(mode="after")
    def _labels_unique(self) -> Self:
        labels = [target_label(t) for t in self.targets]
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise ValueError(f"targets need distinct labels; repeated: {', '.join(repeated)}")
        return self

    @property
    def scored_run(self) -> str | None:
        if self.run_id is not None:
            return self.run_id
        return next((t.run_id for t in self.targets if isinstance(t, CheckpointTarget)), None)


class EvalStatus(StrEnum):
    pending = "pending"
    running = "running"
    completed = "completed"
    failed = "failed"


class EvalRead(ApiModel):
    id: str
    status: EvalStatus
    run_id: str | None
    request: EvalCreate
    reports: dict[str, EvalReport] = Field(
        default_factory=dict, description="By target label, in the request's order; filled as targets finish."
    )
    gain: Interval | None = Field(
        default=None, description="With two or more targets: the paired per-prompt gain of the last over the first."
    )
    error: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None


class EvalList(ApiModel):
    items: list[EvalRead] = Field(description="Newest first.")
    total: int

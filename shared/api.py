"""The gateway's REST models: what users, the CLI, producers and the trainer send and receive."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from shared.config import RunConfig
from shared.schemas import CheckpointManifest, PolicyVersion


class RunStatus(StrEnum):
    pending = "pending"
    running = "running"
    completed = "completed"
    failed = "failed"
    stopped = "stopped"

    @property
    def terminal(self) -> bool:
        return self in {RunStatus.completed, RunStatus.failed, RunStatus.stopped}


class ApiModel(BaseModel):
    model_config = ConfigDict(extra="forbid", from_attributes=True)


class StepRead(ApiModel):
    step: int
    policy_version: int
    mean_score: float | None
    metrics: dict[str, float]
    created_at: datetime


class CheckpointRead(ApiModel):
    run_id: str
    version: int
    step: int
    path: str
    manifest: CheckpointManifest
    created_at: datetime


class RunRead(ApiModel):
    id: str
    name: str
    status: RunStatus
    config: RunConfig
    step: int
    policy_version: int
    served_version: int | None = Field(default=None, description="Version the generator serves for it.")
    recent_mean_score: float | None = Field(default=None, description="Mean score over the last steps.")
    checkpoint_dir: str | None = None
    error: str | None = None
    trainer: str | None = None
    created_at: datetime
    updated_at: datetime
    steps: list[StepRead] = Field(default_factory=list)


class RunList(ApiModel):
    items: list[RunRead]
    total: int


class ClaimRequest(ApiModel):
    trainer: str = Field(min_length=1, description="Name of the trainer that will run it.")


class StepReport(ApiModel):
    """Sent by the trainer after an update and its checkpoint are durable."""

    step: int = Field(ge=1)
    policy_version: int = Field(ge=1)
    mean_score: float | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    checkpoint_path: str = Field(min_length=1)
    manifest: CheckpointManifest


class FinishReport(ApiModel):
    status: RunStatus = RunStatus.completed
    error: str | None = None


class SwapCommand(ApiModel):
    """Hot-swap the generator to a checkpoint recorded for a run."""

    run_id: str
    version: int = Field(ge=0, description="0 restores the run's base model.")


class SwapResult(ApiModel):
    served: PolicyVersion
    seconds: float

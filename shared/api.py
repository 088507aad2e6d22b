"""The gateway's REST models: what users, the CLI, producers and the trainer send and receive."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.config import RunConfig
from shared.schemas import CheckpointManifest, EpisodeGroup, PolicyVersion

MAX_INT = 2**31 - 1
"""The largest integer a path, query or body may carry where it reaches SQL (a 32-bit column)."""


class RunStatus(StrEnum):
    pending = "pending"
    running = "running"
    paused = "paused"
    completed = "completed"
    failed = "failed"
    stopped = "stopped"

    @property
    def terminal(self) -> bool:
        return self in {RunStatus.completed, RunStatus.failed, RunStatus.stopped}


class ApiModel(BaseModel):
    model_config = ConfigDict(extra="forbid", from_attributes=True)

    @model_validator(mode="after")
    def _utc(self) -> Self:
        """Times are UTC with their offset (RFC 3339), also when the database (SQLite) kept none."""
        for name, value in self.__dict__.items():
            if isinstance(value, datetime) and value.tzinfo is None:
                setattr(self, name, value.replace(tzinfo=UTC))
        return self


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

    step: int = Field(ge=1, le=MAX_INT)
    policy_version: int = Field(ge=1, le=MAX_INT)
    mean_score: float | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    checkpoint_path: str = Field(min_length=1)
    manifest: CheckpointManifest


class RewindCommand(ApiModel):
    """Sent by a trainer that resumed from a resumable state older than the run's newest step: the steps
    after it, and their checkpoints, are forgotten; the trainer retrains from there on the same stream
    entries (they were never acknowledged), so nothing is lost or trained twice."""

    step: int = Field(ge=0, le=MAX_INT)
    policy_version: int = Field(ge=0, le=MAX_INT)


class FinishReport(ApiModel):
    status: RunStatus = RunStatus.completed
    error: str | None = None


class SwapCommand(ApiModel):
    """Hot-swap the generator to a checkpoint recorded for a run."""

    run_id: str
    version: int = Field(ge=0, le=MAX_INT, description="0 restores the run's base model.")
    transport: Literal["disk", "nccl"] = Field(
        default="disk",
        description="'nccl': the trainer already pushed this version's weights to every replica by NCCL; the "
        "gateway forwards it in each replica's SwapRequest, which then records the version instead of loading it.",
    )


class ReplicaSwap(ApiModel):
    """One replica's part in a fleet-wide swap."""

    url: str
    served: PolicyVersion | None = Field(default=None, description="What it serves after the swap.")
    seconds: float
    error: str | None = Field(default=None, description="Why it failed; it takes no work until it catches up.")


class SwapResult(ApiModel):
    served: PolicyVersion
    seconds: float
    replicas: list[ReplicaSwap] = Field(default_factory=list, description="Each replica's outcome, in parallel.")


class RollbackCommand(ApiModel):
    """Serve an earlier checkpoint of a run that is no longer training."""

    version: int | None = Field(
        default=None,
        ge=0,
        le=MAX_INT,
        description="The version to serve; default: the one before the version served now.",
    )


class MetricPoint(ApiModel):
    step: int
    policy_version: int
    created_at: datetime
    mean_score: float | None
    values: dict[str, float] = Field(description="The step's metrics, by name (only the names asked for).")


class MetricSeries(ApiModel):
    """A run's per-step metrics as series, oldest step first: what the dashboard charts."""

    run_id: str
    names: list[str] = Field(description="Every metric name any step of the run reported, sorted.")
    points: list[MetricPoint]


class EpisodeSample(ApiModel):
    entry_id: str = Field(description="Its Redis stream entry id; also the pagination cursor.")
    group: EpisodeGroup = Field(description="Task, rubric, answers, verdicts and rewards (token ids left out).")


class EpisodePage(ApiModel):
    items: list[EpisodeSample] = Field(description="Newest first.")
    next_cursor: str | None = Field(description="Pass as ``before`` for the next (older) page; null at the end.")
    total: int = Field(description="Groups the run's stream holds.")


JUDGE_NAME = r"^[a-z0-9][a-z0-9._-]{0,62}$"


class JudgeRegistration(ApiModel):
    """An external judge service that implements the judge API (docs/judge-api.md)."""

    name: str = Field(pattern=JUDGE_NAME, description="Run configs refer to it as ``judge.name``.")
    url: str = Field(min_length=1, pattern=r"^https?://", description="Its base URL.")
    description: str = Field(default="", max_length=500)


class JudgeRead(ApiModel):
    name: str
    url: str
    description: str
    healthy: bool | None = Field(description="Result of the latest health check; null before the first.")
    schema_version: str | None = None
    error: str | None = Field(default=None, description="Why the latest health check failed.")
    checked_at: datetime | None = None
    created_at: datetime


class ReplicaStatus(ApiModel):
    url: str = Field(description="Its admin URL.")
    healthy: bool = Field(description="It answers.")
    ready: bool = Field(description="It serves weights it loaded fully (no failed swap left it broken).")
    admitted: bool = Field(description="It takes inference work (a replica behind the fleet does not).")
    current: bool = Field(description="It serves the fleet's version (the last swap that reached any replica).")
    served: PolicyVersion | None = None
    error: str | None = None


class GeneratorStatus(ApiModel):
    url: str = Field(description="The fleet as configured: one admin URL, a list, or dns+http://... .")
    healthy: bool = Field(description="Every replica answers.")
    ready: bool = Field(description="Every replica serves whole weights, is admitted and serves the fleet's version.")
    served: PolicyVersion | None = Field(default=None, description="What the fleet serves (most replicas).")
    error: str | None = None
    replicas: list[ReplicaStatus] = Field(default_factory=list)


class TokenCreate(ApiModel):
    name: str = Field(min_length=1, max_length=120, description="Who or what uses it (a person, the trainer).")


class TokenRead(ApiModel):
    id: int
    name: str
    created_at: datetime
    revoked_at: datetime | None = None


class TokenIssued(TokenRead):
    token: str = Field(description="The secret itself: shown once, stored only as a hash.")

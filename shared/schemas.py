"""Wire schemas shared by every service: the domain objects that cross HTTP and Redis.

Every model here is part of a versioned contract (``SCHEMA_VERSION``); a field is only ever added
with a default, so older producers and consumers keep working.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal
from uuid import uuid4

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SCHEMA_VERSION = "1"

Rating = Literal[0, 1, 2]
"""The method's per-criterion rating: 0 misses the gold fact, 1 partial, 2 matches it."""


def new_id() -> str:
    return uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC)


class Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


# --- documents, tasks, rubrics -------------------------------------------------------------------


class Document(Schema):
    """One pre-training document; ``id`` is what lets a run say which text produced which task."""

    id: str = Field(min_length=1)
    text: str = Field(min_length=1)
    source: str = ""


class ChatMessage(Schema):
    role: Literal["system", "user", "assistant"]
    content: str


class WordCountCheck(Schema):
    """Programmatic: the answer's word count lies in [min_words, max_words]."""

    type: Literal["word_count"] = "word_count"
    min_words: int = Field(default=0, ge=0)
    max_words: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _bounds(self) -> WordCountCheck:
        if self.max_words is not None and self.max_words < self.min_words:
            raise ValueError("max_words must be >= min_words")
        return self


class MentionCheck(Schema):
    """Programmatic: the answer mentions (or must not mention) every / any of ``terms``."""

    type: Literal["must_mention", "must_not_mention"] = "must_mention"
    terms: list[str] = Field(min_length=1)
    match: Literal["all", "any"] = "all"
    case_sensitive: bool = False


class RegexCheck(Schema):
    """Programmatic: the answer matches (``must_match``) or does not match a regular expression."""

    type: Literal["regex"] = "regex"
    pattern: str = Field(min_length=1, max_length=500)
    must_match: bool = True
    ignore_case: bool = False

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from exc
        return pattern


class JsonValidCheck(Schema):
    """Programmatic: the answer is a JSON object (a fenced code block counts) holding ``required_keys``."""

    type: Literal["json_valid"] = "json_valid"
    required_keys: list[str] = Field(default_factory=list)


class LanguageCheck(Schema):
    """Programmatic: the answer is written in ``language`` (ISO 639-1, e.g. ``en``, ``fr``)."""

    type: Literal["language"] = "language"
    language: str = Field(pattern=r"^[a-z]{2}$")


ProgrammaticCheck = Annotated[
    WordCountCheck | MentionCheck | RegexCheck | JsonValidCheck | LanguageCheck, Field(discriminator="type")
]


class Criterion(Schema):
    """One rubric criterion.

    An LLM criterion carries the ``gold`` fact from the document; a programmatic one carries a
    ``check`` that is graded exactly, without a model. In a HealthBench rubric the criterion's text
    is its ``description`` and its value is ``points`` (negative for a pitfall); ``weight`` is unused.
    """

    name: str = Field(min_length=1, max_length=120)
    description: str = Field(default="", max_length=2000)
    gold: str = Field(default="", max_length=1000)
    weight: int = Field(default=1, ge=1, le=5)
    points: int | None = Field(default=None, description="HealthBench: points if met; negative for a pitfall.")
    check: ProgrammaticCheck | None = None

    @property
    def programmatic(self) -> bool:
        return self.check is not None


def unique_names(criteria: list[Criterion]) -> list[Criterion]:
    """Verdicts are keyed by criterion name, so a repeated name gets a numeric suffix."""
    seen: dict[str, int] = {}
    out = []
    for c in criteria:
        seen[c.name] = seen.get(c.name, 0) + 1
        out.append(c if seen[c.name] == 1 else c.model_copy(update={"name": f"{c.name} ({seen[c.name]})"}))
    return out


RubricFormat = Literal["pop", "healthbench"]


class Rubric(Schema):
    """``pop``: the method's criteria rated 0/1/2, score Σ w·rating / Σ w in [0, 2].
    ``healthbench``: criteria met or not, score = met points / positive points (at most 1; pitfalls can
    push it below 0)."""

    format: RubricFormat = "pop"
    criteria: list[Criterion] = Field(min_length=1, max_length=64)

    @model_validator(mode="after")
    def _points_match_format(self) -> Rubric:
        if self.format == "healthbench":
            if any(c.points is None or c.points == 0 for c in self.criteria):
                raise ValueError("every healthbench criterion needs non-zero integer points")
            if not any((c.points or 0) > 0 for c in self.criteria):
                raise ValueError("a healthbench rubric needs at least one criterion with positive points")
        elif any(c.points is not None for c in self.criteria):
            raise ValueError("points belong to healthbench rubrics; pop criteria carry a weight")
        names = [c.name for c in self.criteria]
        if len(set(names)) != len(names):
            raise ValueError("criterion names must be unique: verdicts are keyed by them")
        return self

    @classmethod
    def healthbench(cls, items: list[dict[str, object]]) -> Rubric:
        """From HealthBench's own items (``{"criterion": str, "points": int, ...}``), unchanged in meaning."""
        criteria = [
            Criterion(name=f"rubric_item_{i}", description=str(item["criterion"]), points=int(str(item["points"])))
            for i, item in enumerate(items, start=1)
        ]
        return cls(format="healthbench", criteria=criteria)


class DocumentRef(Schema):
    """Where a task came from: which document, which chunk of it, and which draw of the run."""

    document_id: str
    chunk: int = Field(default=0, ge=0)
    chunks: int = Field(default=1, ge=1)
    draw: int = Field(default=0, ge=0, description="The run's global draw index (reproducible from the seed).")
    epoch: int = Field(default=0, ge=0)


class Task(Schema):
    """A self-contained task the policy proposed from a document, with its reference answer."""

    id: str = Field(default_factory=new_id)
    document_id: str
    task_type: str = "long_form_qa"
    prompt: str = Field(min_length=1)
    reference: str = ""
    rubric: Rubric | None = None
    constraints: list[Criterion] = Field(
        default_factory=list, description="Machine-checkable criteria the task states (instruction following)."
    )
    source: DocumentRef | None = None


class ModelEndpoint(Schema):
    """An OpenAI-compatible model that plays a role instead of the policy (a "teacher")."""

    base_url: str = Field(min_length=1, description="Base URL up to and including /v1.")
    model: str = Field(min_length=1)
    api_key_env: str | None = Field(
        default=None,
        description="Name of the environment variable holding the API key, read by the service that "
        "makes the call; keys never travel in configs or requests.",
    )
    structured_output: bool = Field(
        default=True,
        description="Request json_schema output; without it (or when refused) the schema is given in the prompt "
        "and the reply parsed tolerantly.",
    )


# --- grading -------------------------------------------------------------------------------------


class Verdict(Schema):
    """The judge's rating of one answer on one criterion.

    ``rating`` is 0/1/2 for pop rubrics; for healthbench ones it is 2 (met) or 0 (not met), with
    ``met`` set. ``backend`` says what graded it (``llm:<model>`` or ``programmatic:<check>``).
    """

    criterion: str
    rating: Rating
    reason: str = ""
    met: bool | None = None
    backend: str = ""


class AnswerGrade(Schema):
    """All verdicts for one answer; ``score`` is None when the answer could not be graded."""

    verdicts: list[Verdict] = Field(default_factory=list)
    score: float | None = Field(default=None, le=2.0, description="pop: [0, 2]; healthbench: at most 1.")
    valid: bool = True
    error: str | None = None


GradingMode = Literal["all_at_once", "per_criterion"]


class GradeRequest(Schema):
    """Judge API input: one group of answers to one task."""

    schema_version: str = SCHEMA_VERSION
    document: str
    task: str = Field(min_length=1)
    reference: str = ""
    answers: list[str] = Field(min_length=1, max_length=512)
    rubric: Rubric | None = None
    extra_criteria: list[Criterion] = Field(
        default_factory=list, max_length=32, description="Criteria appended to the rubric (e.g. programmatic checks)."
    )
    rubric_guidance: str = Field(default="", description="Task-type advice added to the rubric writer's brief.")
    judge_guidance: str = Field(default="", description="Task-type advice added to the scorer's brief.")
    rubric_writer: ModelEndpoint | None = Field(default=None, description="Teacher that writes the rubric.")
    scorer: ModelEndpoint | None = Field(default=None, description="Teacher that rates the answers.")
    grading: GradingMode = Field(
        default="all_at_once",
        description="all_at_once: one scorer call per answer (cheaper); "
        "per_criterion: one call per criterion and answer (more accurate).",
    )


class GradeResponse(Schema):
    schema_version: str = SCHEMA_VERSION
    rubric: Rubric
    grades: list[AnswerGrade]
    backend: str


# --- episodes and policy versions ----------------------------------------------------------------


class Completion(Schema):
    """One sampled answer exactly as the generator produced it (token ids and behaviour log-probs)."""

    text: str
    token_ids: list[int] = Field(default_factory=list)
    logprobs: list[float] = Field(default_factory=list)
    finish_reason: str | None = None
    policy_version: int | None = Field(
        default=None,
        ge=0,
        description="The version serving when the answer was sent (our generator says; None: "
        "an endpoint that does not).",
    )
    policy_version_start: int | None = Field(
        default=None,
        ge=0,
        description="The version serving when the request arrived; below ``policy_version`` "
        "when a swap landed while the answer was generated (its tokens carry both versions' log-probs).",
    )

    @model_validator(mode="after")
    def _aligned(self) -> Completion:
        if self.logprobs and len(self.logprobs) != len(self.token_ids):
            raise ValueError("logprobs and token_ids must have the same length")
        return self


class Episode(Schema):
    """One scored answer: the unit of training data, tagged with the policy version that made it."""

    id: str = Field(default_factory=new_id)
    run_id: str
    task_id: str
    policy_version: int = Field(ge=0)
    prompt_messages: list[ChatMessage]
    prompt_token_ids: list[int] = Field(default_factory=list)
    completion: Completion
    verdicts: list[Verdict] = Field(default_factory=list)
    reward: float | None = None
    advantage: float | None = None
    created_at: datetime = Field(default_factory=utcnow)


class EpisodeGroup(Schema):
    """The K scored answers to one task, appended to the stream as one entry.

    A group is the unit both DPO (best vs worst) and GRPO (group-normalised advantages) need, so it
    travels and is acknowledged whole: a consumer never sees half a group.
    """

    schema_version: str = SCHEMA_VERSION
    run_id: str
    task: Task
    document_id: str
    policy_version: int = Field(ge=0)
    episodes: list[Episode] = Field(min_length=1)
    created_at: datetime = Field(default_factory=utcnow)

    @property
    def rewards(self) -> list[float | None]:
        return [e.reward for e in self.episodes]


class PolicyVersion(Schema):
    """What the generator serves: version 0 is the base model, N the trainer's N-th update."""

    version: int = Field(ge=0)
    run_id: str | None = None
    model: str
    checkpoint_path: str | None = None
    loaded_at: datetime = Field(default_factory=utcnow)
    admitted: bool = Field(
        default=True,
        description="It takes inference work. A fleet replica starts without (its generation routes answer 503) "
        "until the gateway has brought it to the fleet's version; a replica that failed a swap the others made "
        "loses it until it catches up.",
    )


class Admission(Schema):
    """Admin route body: let a replica take inference work, or stop it until it is brought up to date."""

    admitted: bool


class WeightMode(StrEnum):
    full = "full"
    lora = "lora"


class SwapRequest(Schema):
    """Generator route body: load the checkpoint at ``path`` and serve it as ``version``."""

    version: int = Field(ge=0)
    path: str = Field(min_length=1)
    run_id: str | None = None
    mode: WeightMode = WeightMode.full
    checksums: dict[str, str] = Field(
        default_factory=dict,
        description="file name -> sha256 (the manifest's): every weights file (each shard and the index) is "
        "verified before the served weights are touched, and a weights file not listed is refused.",
    )
    transport: Literal["disk", "nccl"] = Field(
        default="disk",
        description="'disk': load the checkpoint at ``path``. 'nccl': the trainer has already broadcast this "
        "version's full weights into the engine (vLLM's weight-transfer routes, committed with weight_version "
        "'<run_id>:v<version>'): check that tag, record the version (``path`` is its durable copy, for rollbacks "
        "and restarts), reset the prefix cache and end the trainer's hold; nothing is read from disk.",
    )


class HoldRequest(Schema):
    """Generator route body: pause generation for a trainer on the same cores, at most this long."""

    seconds: float = Field(gt=0, le=3600, description="Lease: generation resumes by itself after this.")


class GenerationHold(Schema):
    held: bool
    seconds: float | None = None


class CheckpointManifest(Schema):
    """Written beside the weights; a checkpoint directory without one is incomplete."""

    run_id: str
    version: int = Field(ge=1)
    step: int = Field(ge=1)
    base_model: str
    mode: WeightMode = WeightMode.full
    files: dict[str, str] = Field(description="file name -> sha256")
    dtype: str | None = Field(default=None, description="The served weights' dtype (full mode).")
    consumed: list[str] = Field(
        default_factory=list, description="The stream entries this version's update trained on (provenance)."
    )
    dropped: dict[str, str] = Field(
        default_factory=dict, description="Stream entries read for this update but dropped: entry -> why."
    )
    created_at: datetime = Field(default_factory=utcnow)

"""HealthBench-style eval sets: a conversation and physician-written rubric items with points
(Arora et al., 2025). The judge grades each item met or not; an example scores its met points over
its positive points, and the set's score is the mean clipped to [0, 1] (``Rubric(format="healthbench")``).

A line is the public file's own: ``{"prompt_id", "prompt": [{"role", "content"}, ...], "rubrics":
[{"criterion", "points", "tags"}, ...], "example_tags": [...]}``; fields we do not use (ideal
completions, canaries) are ignored, so the real files load unchanged.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.evaluation import read_jsonl
from shared.schemas import ChatMessage, Rubric

HEALTHBENCH_SAMPLE = Path(__file__).parent / "healthbench_sample.jsonl"


class RubricItem(BaseModel):
    model_config = ConfigDict(extra="ignore")

    criterion: str = Field(min_length=1, max_length=2000)
    points: int = Field(ge=-10, le=10)
    tags: list[str] = Field(default_factory=list)

    @field_validator("points")
    @classmethod
    def _nonzero(cls, points: int) -> int:
        if points == 0:
            raise ValueError("an item worth 0 points cannot change a score")
        return points


class HealthBenchItem(BaseModel):
    model_config = ConfigDict(extra="ignore")

    prompt_id: str = Field(min_length=1)
    prompt: list[ChatMessage] = Field(min_length=1)
    rubrics: list[RubricItem] = Field(min_length=1, max_length=64)
    example_tags: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _answerable_and_scorable(self) -> HealthBenchItem:
        if self.prompt[-1].role != "user":
            raise ValueError("the conversation must end with a user turn: that is what the model answers")
        if not any(item.points > 0 for item in self.rubrics):
            raise ValueError("no item has positive points: the score's denominator would be 0")
        return self

    def rubric(self) -> Rubric:
        return Rubric.healthbench([item.model_dump() for item in self.rubrics])

    @property
    def theme(self) -> str:
        """The example's theme tag (``theme:emergency_referrals`` -> ``emergency_referrals``): scores
        are reported by it, as HealthBench reports them."""
        themes = [t.removeprefix("theme:") for t in self.example_tags if t.startswith("theme:")]
        return themes[0] if themes else "all"


def load_healthbench(path: str | Path) -> list[HealthBenchItem]:
    """A HealthBench JSONL file; a malformed line is an error naming the file and line."""
    return read_jsonl(path, HealthBenchItem, "a HealthBench item")

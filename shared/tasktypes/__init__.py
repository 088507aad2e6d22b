"""Task types as data: one YAML file per type holds every prompt that type needs.

A user adds a task type by dropping a file into a directory the run config lists
(``selfplay.task_dirs``); a file there named like a built-in replaces the built-in.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.schemas import ChatMessage

BUILTIN_DIR = Path(__file__).parent / "builtin"


class TaskType(BaseModel):
    """One kind of task the proposer writes from a document, and how it is answered and judged."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    """Identifier used in a run's ``task_mix``; equals the file name without ``.yaml``."""
    description: str = ""
    """One line for humans."""
    synthesis_prompt: str = Field(min_length=1)
    """System prompt of the proposer: what task to write from the document, and its reference."""
    answer_prompt: str = Field(min_length=1)
    """System prompt of the solver, who never sees the document."""
    rubric_guidance: str = ""
    """Added to the rubric writer's brief: what criteria suit this kind of task."""
    judge_guidance: str = ""
    """Added to the scorer's brief: how to read the rubric for this kind of task."""
    constraints: bool = False
    """The proposer also states machine-checkable constraints (length, must / must-not mention)."""
    max_answer_tokens: int | None = Field(default=None, ge=8)
    """This type's answer budget (e.g. longer creative pieces) unless the run sets ``max_answer_tokens``."""

    def solve_messages(self, prompt: str) -> list[ChatMessage]:
        """What a solver sees: this type's brief and the task. The document never enters these messages."""
        return [ChatMessage(role="system", content=self.answer_prompt), ChatMessage(role="user", content=prompt)]


class TaskTypeError(ValueError):
    """A task type is unknown or its file is invalid; the message names which and why."""


def _load_file(path: Path) -> TaskType:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        data.setdefault("name", path.stem)
        task_type = TaskType.model_validate(data)
    except (OSError, yaml.YAMLError, ValidationError, AttributeError) as exc:
        raise TaskTypeError(f"task type file {path}: {exc}") from exc
    if task_type.name != path.stem:
        raise TaskTypeError(f"task type file {path}: name {task_type.name!r} differs from the file name")
    return task_type


def available(dirs: Iterable[str | Path] = ()) -> dict[str, Path]:
    """Every task type's file, by name; later directories override earlier ones and the built-ins."""
    found: dict[str, Path] = {}
    for folder in (BUILTIN_DIR, *map(Path, dirs)):
        if not folder.is_dir():
            raise TaskTypeError(f"task type directory not found: {folder}")
        for path in sorted(folder.glob("*.yaml")):
            found[path.stem] = path
    return found


def load_task_types(names: Iterable[str], dirs: Iterable[str | Path] = ()) -> dict[str, TaskType]:
    """The named task types, validated; an unknown name is an error listing the known ones."""
    files = available(dirs)
    missing = [n for n in names if n not in files]
    if missing:
        raise TaskTypeError(f"unknown task type(s) {missing}; known: {sorted(files)}")
    return {n: _load_file(files[n]) for n in names}

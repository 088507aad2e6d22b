"""Prompt shapes (Jinja templates in ``templates/``) and JSON schemas of the judge's LLM calls."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template

from shared.schemas import ChatMessage, Criterion, RubricFormat

NAME_CHARS, TEXT_CHARS, REASON_CHARS, MAX_CRITERIA = 48, 160, 120, 5
# Per-object overhead of keys, quotes and punctuation in compact JSON, in characters.
_OVERHEAD = 64
_TEMPLATES = Path(__file__).parent / "templates"


_BLOCK_TAG = re.compile(r"<(/?)\s*(document|task|reference|answer)\b", re.IGNORECASE)


def untrusted(text: str) -> str:
    """Corpus text and model output go into tagged blocks; a tag of ours inside them is defused, so
    they can neither close their block nor open a new one (prompt injection)."""
    return _BLOCK_TAG.sub(lambda m: f"‹{m[1]}{m[2]}", text)


@cache
def template(name: str) -> Template:
    env = Environment(loader=FileSystemLoader(_TEMPLATES), undefined=StrictUndefined, keep_trailing_newline=False)
    env.filters["untrusted"] = untrusted
    return env.get_template(name)


def render(name: str, **values: Any) -> str:
    return template(name).render(**values).strip()


RUBRIC_SYSTEM = render("rubric_system.jinja", max_criteria=MAX_CRITERIA, guidance="")
SCORE_SYSTEM = render("score_pop_system.jinja", guidance="")
HEALTHBENCH_SYSTEM = render("score_healthbench_system.jinja", guidance="")


def rubric_token_bound(max_criteria: int = MAX_CRITERIA) -> int:
    """Tokens that always let a schema-valid rubric close: every token is at least one character."""
    return max_criteria * (NAME_CHARS + 2 * TEXT_CHARS + _OVERHEAD) + _OVERHEAD


def verdict_token_bound(count: int) -> int:
    return count * (REASON_CHARS + _OVERHEAD) + _OVERHEAD


def rubric_schema(max_criteria: int = MAX_CRITERIA) -> dict[str, Any]:
    criterion = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": NAME_CHARS},
            "description": {"type": "string", "maxLength": TEXT_CHARS},
            "gold": {"type": "string", "minLength": 1, "maxLength": TEXT_CHARS},
            "weight": {"type": "integer", "enum": [1, 2, 3, 4, 5]},
        },
        "required": ["name", "description", "gold", "weight"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"criteria": {"type": "array", "items": criterion, "minItems": 1, "maxItems": max_criteria}},
        "required": ["criteria"],
        "additionalProperties": False,
    }


def verdict_schema(count: int, rubric_format: RubricFormat = "pop") -> dict[str, Any]:
    """One numbered property per criterion, so the reply's shape pins every criterion down."""
    decision = {"type": "boolean"} if rubric_format == "healthbench" else {"type": "integer", "enum": [0, 1, 2]}
    key = "met" if rubric_format == "healthbench" else "rating"
    item = {
        "type": "object",
        "properties": {key: decision, "reason": {"type": "string", "maxLength": REASON_CHARS}},
        "required": [key, "reason"],
        "additionalProperties": False,
    }
    keys = [f"criterion_{i}" for i in range(1, count + 1)]
    return {"type": "object", "properties": dict.fromkeys(keys, item), "required": keys, "additionalProperties": False}


def answer_spread(answers: list[str], size: int) -> list[str]:
    """Answers sorted by length, evenly spaced: the writer sees short, typical and long ones."""
    ordered = sorted(answers, key=len)
    if len(ordered) <= size:
        return ordered
    step = (len(ordered) - 1) / (size - 1)
    return [ordered[round(i * step)] for i in range(size)]


def rubric_messages(
    document: str, task: str, reference: str, samples: list[str], guidance: str = ""
) -> list[ChatMessage]:
    system = render("rubric_system.jinja", max_criteria=MAX_CRITERIA, guidance=guidance.strip())
    user = render("rubric_user.jinja", document=document, task=task, reference=reference, samples=samples)
    return [ChatMessage(role="system", content=system), ChatMessage(role="user", content=user)]


def score_messages(
    task: str, criteria: list[Criterion], answer: str, guidance: str = "", rubric_format: RubricFormat = "pop"
) -> list[ChatMessage]:
    """The scorer never sees the document: it reaches the scorer only through the gold facts."""
    system = render(f"score_{rubric_format}_system.jinja", guidance=guidance.strip())
    user = render("score_user.jinja", task=task, criteria=criteria, answer=answer)
    return [ChatMessage(role="system", content=system), ChatMessage(role="user", content=user)]

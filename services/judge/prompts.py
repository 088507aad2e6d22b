"""Prompt shapes and JSON schemas of the two LLM judge calls (rubric writing, scoring)."""

from __future__ import annotations

from typing import Any

from shared.schemas import ChatMessage, Criterion

RUBRIC_SYSTEM = (
    "You write grading rubrics. From the source document, write 1 to 5 atomic, discriminative, "
    "task-specific criteria. Each criterion has a short name, a description of what a good answer "
    "does, the gold fact from the document that a good answer must contain, and a weight from 1 "
    "(minor) to 5 (essential). Prefer criteria that separate the sample answers from one another."
)

SCORE_SYSTEM = (
    "You grade an answer against a rubric. For every criterion, rate 0 if the answer misses the "
    "gold fact or contradicts it, 1 if it is partly there, 2 if it matches the gold fact. Give a "
    "one-sentence reason for each rating."
)


NAME_CHARS, TEXT_CHARS, REASON_CHARS, MAX_CRITERIA = 48, 160, 120, 5
# Per-object overhead of keys, quotes and punctuation in compact JSON, in characters.
_OVERHEAD = 64


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


def verdict_schema(count: int) -> dict[str, Any]:
    """One numbered property per criterion, so the reply's shape pins every criterion down."""
    item = {
        "type": "object",
        "properties": {
            "rating": {"type": "integer", "enum": [0, 1, 2]},
            "reason": {"type": "string", "maxLength": REASON_CHARS},
        },
        "required": ["rating", "reason"],
        "additionalProperties": False,
    }
    keys = [f"criterion_{i}" for i in range(1, count + 1)]
    return {
        "type": "object",
        "properties": dict.fromkeys(keys, item),
        "required": keys,
        "additionalProperties": False,
    }


def answer_spread(answers: list[str], size: int) -> list[str]:
    """Answers sorted by length, evenly spaced: the writer sees short, typical and long ones."""
    ordered = sorted(answers, key=len)
    if len(ordered) <= size:
        return ordered
    step = (len(ordered) - 1) / (size - 1)
    return [ordered[round(i * step)] for i in range(size)]


def _brief(system: str, guidance: str) -> str:
    return f"{system}\n\n{guidance.strip()}" if guidance.strip() else system


def rubric_messages(
    document: str, task: str, reference: str, samples: list[str], guidance: str = ""
) -> list[ChatMessage]:
    shown = "\n\n".join(f"[Answer {i}]\n{a}" for i, a in enumerate(samples, start=1))
    user = (
        f"Document:\n{document}\n\nTask:\n{task}\n\nReference answer:\n{reference}\n\n"
        f"Sample answers:\n{shown}\n\nWrite the rubric as JSON."
    )
    return [ChatMessage(role="system", content=_brief(RUBRIC_SYSTEM, guidance)), ChatMessage(role="user", content=user)]


def score_messages(task: str, criteria: list[Criterion], answer: str, guidance: str = "") -> list[ChatMessage]:
    """The scorer never sees the document: it reaches the scorer only through the gold facts."""
    listed = "\n".join(
        f"criterion_{i}: {c.name} (weight {c.weight}) - {c.description} Gold: {c.gold}"
        for i, c in enumerate(criteria, start=1)
    )
    user = f"Task:\n{task}\n\nRubric:\n{listed}\n\nAnswer:\n{answer}\n\nRate every criterion as JSON."
    return [ChatMessage(role="system", content=_brief(SCORE_SYSTEM, guidance)), ChatMessage(role="user", content=user)]

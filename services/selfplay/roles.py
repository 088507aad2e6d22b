"""The policy's two producer roles: propose a task from a document, and answer it without one."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ValidationError

from shared.clients.llm import ChatClient, Sampled
from shared.config import SelfPlayConfig
from shared.schemas import ChatMessage, Document, Task

PROPOSE_SYSTEM = (
    "You turn a document into a task for a student who will NOT see the document. Write one "
    "self-contained question or instruction whose good answer needs the facts in the document, "
    "then a reference answer drawn from the document. Never mention the document, the text or "
    "the passage, and never give the answer away in the task."
)
SOLVE_SYSTEM = "You are a knowledgeable assistant. Answer the user's request accurately and concisely."

# The task must stand alone: a task that points at its source cannot be answered without it.
_REFERS_TO_SOURCE = re.compile(
    r"\b(according to|in|from|based on|per) (the|this) (document|text|passage|article)\b", re.IGNORECASE
)


class Proposal(BaseModel):
    task: str
    reference: str


def proposal_schema(cfg: SelfPlayConfig) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "task": {"type": "string", "minLength": 1, "maxLength": cfg.max_task_chars},
            "reference": {"type": "string", "minLength": 1, "maxLength": cfg.max_reference_chars},
        },
        "required": ["task", "reference"],
        "additionalProperties": False,
    }


def propose_messages(doc: Document) -> list[ChatMessage]:
    user = f"Document:\n{doc.text}\n\nWrite the task and its reference answer as JSON."
    return [ChatMessage(role="system", content=PROPOSE_SYSTEM), ChatMessage(role="user", content=user)]


def solve_messages(task: Task) -> list[ChatMessage]:
    """What the solver sees: the task alone. The document never enters these messages."""
    return [ChatMessage(role="system", content=SOLVE_SYSTEM), ChatMessage(role="user", content=task.prompt)]


def rejection(proposal: Proposal) -> str | None:
    task = proposal.task.strip()
    if not task:
        return "empty_task"
    if _REFERS_TO_SOURCE.search(task):
        return "refers_to_document"
    return None


async def propose(llm: ChatClient, doc: Document, cfg: SelfPlayConfig, rejected: dict[str, int]) -> Task | None:
    """A task and reference from ``doc``; unparseable or rejected output is retried, boundedly."""
    # Each token is at least one character, so this budget always lets the JSON close.
    max_tokens = cfg.max_task_chars + cfg.max_reference_chars + 64
    for _ in range(cfg.propose_retries):
        data, _raw = await llm.json_chat(propose_messages(doc), proposal_schema(cfg), max_tokens, temperature=1.0)
        try:
            proposal = Proposal.model_validate(data)
        except ValidationError:
            rejected["unparseable"] = rejected.get("unparseable", 0) + 1
            continue
        reason = rejection(proposal)
        if reason:
            rejected[reason] = rejected.get(reason, 0) + 1
            continue
        return Task(document_id=doc.id, prompt=proposal.task.strip(), reference=proposal.reference.strip())
    return None


async def solve(llm: ChatClient, task: Task, cfg: SelfPlayConfig) -> Sampled:
    return await llm.sample(solve_messages(task), cfg.group_size, cfg.max_answer_tokens, cfg.temperature)

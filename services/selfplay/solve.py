"""The solver: K answers to a task, without the document."""

from __future__ import annotations

from shared.clients.llm import ChatClient, Sampled
from shared.config import SelfPlayConfig
from shared.schemas import ChatMessage, Task
from shared.tasktypes import TaskType


def solve_messages(task: Task, task_type: TaskType) -> list[ChatMessage]:
    """What the solver sees: its brief and the task. The document never enters these messages."""
    return task_type.solve_messages(task.prompt)


def answer_budget(task_type: TaskType, cfg: SelfPlayConfig) -> int:
    """A run that sets ``max_answer_tokens`` gets it for every type; otherwise a type's own default wins."""
    if "max_answer_tokens" in cfg.model_fields_set or task_type.max_answer_tokens is None:
        return cfg.max_answer_tokens
    return task_type.max_answer_tokens


async def solve(llm: ChatClient, task: Task, task_type: TaskType, cfg: SelfPlayConfig, on_policy: bool) -> Sampled:
    """On-policy answers carry the generator's token ids and log-probs; a teacher's carry text only."""
    max_tokens = answer_budget(task_type, cfg)
    return await llm.sample(solve_messages(task, task_type), cfg.group_size, max_tokens, cfg.temperature, on_policy)

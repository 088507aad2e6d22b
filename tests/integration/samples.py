"""Scored groups as a producer writes them, for tests of what reads the stream (no model needed)."""

from __future__ import annotations

from shared.schemas import Completion, Episode, EpisodeGroup, Task, Verdict


def group(run_id: str, i: int) -> EpisodeGroup:
    task = Task(document_id=f"doc-{i}", prompt=f"Question {i}?", reference=f"Answer {i}.")
    episodes = [
        Episode(
            run_id=run_id,
            task_id=task.id,
            policy_version=0,
            prompt_messages=[{"role": "user", "content": task.prompt}],
            prompt_token_ids=[1, 2, 3],
            completion=Completion(text=f"answer {i}.{k}", token_ids=[4, 5], logprobs=[-0.1, -0.2]),
            verdicts=[Verdict(criterion="accurate", rating=2 if k else 0, reason="matches gold" if k else "wrong")],
            reward=2.0 if k else 0.0,
        )
        for k in range(2)
    ]
    return EpisodeGroup(run_id=run_id, task=task, document_id=task.document_id, policy_version=0, episodes=episodes)

"""Scored groups built from a policy's own tokenizer, for updates that need no generator."""

from __future__ import annotations

from services.trainer.policy import Policy
from shared.schemas import ChatMessage, Completion, Episode, EpisodeGroup, Task

# Groups of different sizes and answer lengths, so any mis-weighting of a share of the batch shows.
MIXED_REWARDS = [[2.0, 0.0, 1.0, 0.5], [0.0, 1.5, 2.0, 1.0, 0.0], [1.0, 2.0, 0.0]]
# The same answers scored the other way round: a second update whose gradient differs from the first's,
# so what Adam's moments carry over (and a resume must restore) shows in the weights.
REVERSED_REWARDS = [list(reversed(r)) for r in MIXED_REWARDS]


def make_group(policy: Policy, rewards: list[float], with_logprobs: bool) -> EpisodeGroup:
    task = Task(document_id="health-001", prompt="Name one organ of the body.")
    messages = [ChatMessage(role="user", content=task.prompt)]
    prompt_ids = policy.tokenizer.apply_chat_template([m.model_dump() for m in messages], add_generation_prompt=True)
    if not isinstance(prompt_ids, list):
        prompt_ids = prompt_ids["input_ids"]
    episodes = []
    for i, reward in enumerate(rewards):
        text = ["The heart.", "Lungs.", "The liver filters blood.", "Skin"][i % 4]
        ids = policy.tokenizer.encode(text, add_special_tokens=False)
        logprobs = [-1.0] * len(ids) if with_logprobs else []
        episodes.append(
            Episode(
                run_id="r",
                task_id=task.id,
                policy_version=0,
                prompt_messages=messages,
                prompt_token_ids=list(prompt_ids),
                completion=Completion(text=text, token_ids=ids, logprobs=logprobs),
                reward=reward,
            )
        )
    return EpisodeGroup(run_id="r", task=task, document_id=task.document_id, policy_version=0, episodes=episodes)

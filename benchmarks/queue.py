"""The episode queue: Redis stream groups/s in (producers appending) and out (a trainer reading with
its consumer group, parsing and acknowledging), with realistic episode groups.

    python -m benchmarks.queue [--groups 400] [--answers 8] [--tokens 300] [--producers 4]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from dataclasses import dataclass

from redis.asyncio import Redis

from shared.schemas import ChatMessage, Completion, Episode, EpisodeGroup, Task, Verdict
from shared.streams import EpisodeStream


def realistic_group(run_id: str, answers: int, tokens: int) -> EpisodeGroup:
    """A task from a ~1,000-word document, K answers of ``tokens`` tokens with ids and log-probs, and
    five criterion verdicts each: what a producer appends for the paper's settings."""
    task = Task(document_id="doc", prompt="Explain how insulin lowers blood sugar. " * 8, reference="Insulin. " * 60)
    messages = [ChatMessage(role="user", content=task.prompt)]
    episodes = [
        Episode(
            run_id=run_id,
            task_id=task.id,
            policy_version=3,
            prompt_messages=messages,
            prompt_token_ids=list(range(120)),
            completion=Completion(text="word " * tokens, token_ids=list(range(tokens)), logprobs=[-0.5] * tokens),
            verdicts=[Verdict(criterion=f"criterion {c}", rating=c % 3, reason="because " * 8) for c in range(5)],
            reward=1.2,
        )
        for _ in range(answers)
    ]
    return EpisodeGroup(run_id=run_id, task=task, document_id="doc", policy_version=3, episodes=episodes)


@dataclass
class QueueResult:
    groups: int
    group_kib: float
    in_per_s: float
    out_per_s: float
    answers: int

    def table(self) -> str:
        mib_s = self.out_per_s * self.group_kib / 1024
        row = (
            f"| {self.group_kib:.0f} KiB ({self.answers} answers) | {self.groups} | {self.in_per_s:.0f} "
            f"| {self.out_per_s:.0f} | {self.out_per_s * self.answers:.0f} | {mib_s:.1f} |"
        )
        header = "| group size | groups | in (groups/s) | out (groups/s) | out (episodes/s) | out (MiB/s) |"
        return "\n".join([header, "|---|---|---|---|---|---|", row])


async def measure(redis_url: str, groups: int, answers: int, tokens: int, producers: int) -> QueueResult:
    redis = Redis.from_url(redis_url)
    run_id = f"bench-{os.getpid()}-{time.monotonic_ns()}"
    stream = EpisodeStream(redis, run_id)
    group = realistic_group(run_id, answers, tokens)
    try:
        await stream.ensure_group()
        started = time.perf_counter()

        async def produce(n: int) -> None:
            for _ in range(n):
                await stream.append(group)

        await asyncio.gather(*(produce(groups // producers) for _ in range(producers)))
        appended = (groups // producers) * producers
        in_s = time.perf_counter() - started
        started, read = time.perf_counter(), 0
        while read < appended:  # the trainer's way: one group a read, parsed, then acknowledged
            delivered = await stream.read("bench", 1, 1000)
            await stream.ack([d.entry_id for d in delivered])
            read += len(delivered)
        out_s = time.perf_counter() - started
        size = len(group.model_dump_json()) / 1024
        return QueueResult(appended, size, appended / in_s, read / out_s, answers)
    finally:
        await redis.delete(stream.key, stream.dead_key)
        await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--groups", type=int, default=400)
    parser.add_argument("--answers", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=300)
    parser.add_argument("--producers", type=int, default=4)
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    args = parser.parse_args()
    result = asyncio.run(measure(args.redis_url, args.groups, args.answers, args.tokens, args.producers))
    print(result.table())


if __name__ == "__main__":
    main()

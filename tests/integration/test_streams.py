"""The episode stream on a real Redis: append, deliver once, acknowledge, back-pressure, dead letters."""

from __future__ import annotations

from uuid import uuid4

from redis.asyncio import Redis

from shared.schemas import ChatMessage, Completion, Episode, EpisodeGroup, Task
from shared.streams import EpisodeStream


def make_group(run_id: str, version: int = 0) -> EpisodeGroup:
    task = Task(document_id="doc-1", prompt="Why is the sky blue?", reference="Rayleigh scattering")
    episodes = [
        Episode(
            run_id=run_id,
            task_id=task.id,
            policy_version=version,
            prompt_messages=[ChatMessage(role="user", content=task.prompt)],
            prompt_token_ids=[1, 2, 3],
            completion=Completion(text=f"answer {i}", token_ids=[4, 5], logprobs=[-0.5, -0.25]),
            reward=float(i),
        )
        for i in range(3)
    ]
    return EpisodeGroup(run_id=run_id, task=task, document_id="doc-1", policy_version=version, episodes=episodes)


async def test_groups_are_delivered_once_and_pending_until_acked(redis: Redis):
    stream = EpisodeStream(redis, f"test-{uuid4().hex}")
    await stream.ensure_group()
    await stream.ensure_group()  # idempotent
    sent = [make_group(stream.run_id, v) for v in range(3)]
    for g in sent:
        await stream.append(g)
    assert await stream.backlog() == 3

    first = await stream.read("c1", count=2, block_ms=100)
    assert [d.group.policy_version for d in first] == [0, 1]
    assert first[0].group == sent[0]
    assert await stream.pending() == 2
    assert await stream.backlog() == 1

    second = await stream.read("c2", count=10, block_ms=100)
    assert [d.group.policy_version for d in second] == [2]
    assert await stream.read("c1", count=10, block_ms=100) == []

    assert await stream.ack([d.entry_id for d in first + second]) == 3
    assert await stream.pending() == 0
    assert await stream.delivered_count() == 3
    await redis.delete(stream.key)


async def test_malformed_entry_goes_to_dead_letters_not_lost(redis: Redis):
    stream = EpisodeStream(redis, f"test-{uuid4().hex}")
    await stream.ensure_group()
    await redis.xadd(stream.key, {"group": b"{not json"})
    await stream.append(make_group(stream.run_id))
    delivered = await stream.read("c1", count=10, block_ms=100)
    assert len(delivered) == 1
    dead = await redis.xrange(stream.dead_key)
    assert len(dead) == 1 and dead[0][1][b"payload"] == b"{not json"
    assert await stream.pending() == 1  # only the good one awaits its update
    await redis.delete(stream.key, stream.dead_key)


async def test_a_dead_consumers_unacknowledged_groups_are_reclaimed_without_a_new_delivery(redis: Redis):
    stream = EpisodeStream(redis, f"test-{uuid4().hex}")
    await stream.ensure_group()
    for v in range(3):
        await stream.append(make_group(stream.run_id, v))
    held = await stream.read("trainer-dead", count=2, block_ms=100)  # then the process dies
    assert await stream.reclaim("trainer-new", min_idle_ms=60_000) == []  # not idle long enough yet
    reclaimed = await stream.reclaim("trainer-new", min_idle_ms=0)
    assert [d.entry_id for d in reclaimed] == [d.entry_id for d in held]
    assert reclaimed[0].group == held[0].group
    assert await stream.delivered_count() == 2  # claiming is not a second delivery
    fresh = await stream.read("trainer-new", count=10, block_ms=100)
    assert [d.group.policy_version for d in fresh] == [2]
    await stream.ack([d.entry_id for d in reclaimed + fresh])
    assert await stream.pending() == 0 and await stream.reclaim("trainer-new", min_idle_ms=0) == []
    await redis.delete(stream.key)


async def test_export_pages_through_every_group_without_touching_the_consumer_group(redis: Redis):
    stream = EpisodeStream(redis, f"test-{uuid4().hex}")
    await stream.ensure_group()
    sent = [make_group(stream.run_id, v) for v in range(5)]
    for g in sent:
        await stream.append(g)
    await redis.xadd(stream.key, {"group": b"{not json"})
    assert [g async for g in stream.export(batch=2)] == sent  # three XRANGE pages; the bad entry skipped
    assert await stream.backlog() == 6 and await stream.pending() == 0
    assert await redis.xlen(stream.dead_key) == 0
    await redis.delete(stream.key)

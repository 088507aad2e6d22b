"""A run's draws live in Redis: stopped and resumed, or fed by several replicas, a seeded run draws
exactly the documents it would have drawn uninterrupted, each chunk once per epoch."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from services.selfplay.producer import RunProducer
from shared.api import RunRead, RunStatus
from shared.config import RunConfig
from shared.schemas import new_id, utcnow
from shared.settings import SelfPlaySettings
from shared.synthesis import SynthesisLedger

MIX = {"long_form_qa": 1.0, "creative_writing": 1.0, "instruction_following": 1.0}


def make_run(seed: int) -> RunRead:
    config = RunConfig.model_validate({"selfplay": {"seed": seed, "max_doc_words": 200, "task_mix": MIX}})
    now = utcnow()
    return RunRead(
        id=new_id(), name="draws", status=RunStatus.running, config=config, step=0, policy_version=0,
        created_at=now, updated_at=now,
    )  # fmt: skip


async def draws(producer: RunProducer, n: int) -> list[tuple[int, str, str, str | None]]:
    """(draw index, document chunk, task type, why it was filtered)."""
    out = []
    for _ in range(n):
        drawn, task_type, rejected = await producer.next_document()
        out.append((drawn.ref.draw, drawn.document.id, task_type.name, rejected))
    return out


async def test_a_stopped_and_resumed_run_draws_what_it_would_have_drawn(redis: Redis, redis_url: str):
    settings = SelfPlaySettings(redis_url=redis_url)
    unstopped_run, stopped_run = make_run(seed=42), make_run(seed=42)

    unstopped = RunProducer(unstopped_run, settings, redis)
    expected = await draws(unstopped, 40)
    await unstopped.aclose()

    first = RunProducer(stopped_run, settings, redis)
    got = await draws(first, 17)
    await first.aclose()  # the run stops: its producer is gone
    resumed = RunProducer(stopped_run, settings, redis)  # a new process picks the run up again
    got += await draws(resumed, 23)
    await resumed.aclose()

    assert got == expected
    assert [g for g, *_ in got] == list(range(40))
    assert {t for _, _, t, _ in got} == set(MIX)
    other = RunProducer(make_run(seed=43), settings, redis)
    assert await draws(other, 40) != expected
    await other.aclose()


async def test_replicas_share_one_sequence(redis: Redis, redis_url: str):
    settings = SelfPlaySettings(redis_url=redis_url)
    run = make_run(seed=7)
    replicas = [RunProducer(run, settings, redis) for _ in range(3)]
    results = await asyncio.gather(*(draws(r, 20) for r in replicas))
    merged = sorted(d for r in results for d in r)
    assert [g for g, *_ in merged] == list(range(60))  # no draw claimed twice, none skipped
    alone = RunProducer(make_run(seed=7), settings, redis)
    assert merged == await draws(alone, 60)
    ledger = await SynthesisLedger(redis, run.id).read()
    assert ledger.draws == 60
    assert sum(ledger.filtered.values()) == sum(1 for *_, rejected in merged if rejected)
    for p in [*replicas, alone]:
        await p.aclose()


async def test_near_duplicates_are_caught_across_replicas(redis: Redis, redis_url: str):
    settings = SelfPlaySettings(redis_url=redis_url)
    run = make_run(seed=1)
    one, two = RunProducer(run, settings, redis), RunProducer(run, settings, redis)
    task = "Which hormone do the cells of people with type 2 diabetes respond poorly to?"
    assert not await two._duplicate(task)
    await one.ledger.task_accepted(task, window=4)
    assert await two._duplicate(task.replace("poorly", "badly"))
    assert not await two._duplicate("Write a sea shanty about lighthouse keepers on a stormy night.")
    for i in range(4):  # the window slides: older tasks stop counting
        await one.ledger.task_accepted(f"unrelated task number {i} about volcanoes and their ash", window=4)
    assert await one.ledger.recent_tasks(10) == [
        f"unrelated task number {i} about volcanoes and their ash" for i in (3, 2, 1, 0)
    ]
    assert not await two._duplicate(task)
    await one.aclose()
    await two.aclose()

"""A run's synthesis ledger in Redis: the shared draw cursor and what became of every draw.

One hash per run, written by every producer replica with atomic ``HINCRBY``: the draw cursor
(``draws``), groups made per task type, rejections per reason, and the latest diversity gauges.
The gateway reads it for ``GET /v1/runs/{id}/synthesis`` and ``/metrics``.
"""

from __future__ import annotations

from pydantic import BaseModel, Field
from redis.asyncio import Redis

DRAWS, GROUPS = "draws", "groups"
_GROUPS_BY, _FILTERED, _GAUGE = "groups:", "filtered:", "gauge:"


def ledger_key(run_id: str) -> str:
    return f"pop:run:{run_id}:synthesis"


def recent_tasks_key(run_id: str) -> str:
    return f"pop:run:{run_id}:recent-tasks"


class SynthesisRead(BaseModel):
    """What a run's producers have drawn, made and rejected, and how varied their output is."""

    draws: int = Field(0, description="Documents (or chunks) drawn: the run's corpus position.")
    groups: int = Field(0, description="Scored groups appended to the run's stream.")
    groups_by_task_type: dict[str, int] = Field(default_factory=dict)
    filtered: dict[str, int] = Field(default_factory=dict, description="Rejections by reason.")
    diversity: dict[str, float] = Field(default_factory=dict, description="Over the recent accepted tasks.")


class SynthesisLedger:
    def __init__(self, redis: Redis, run_id: str) -> None:
        self.redis, self.key, self.recent_key = redis, ledger_key(run_id), recent_tasks_key(run_id)

    async def recent_tasks(self, window: int) -> list[str]:
        """The run's last ``window`` accepted tasks, newest first, from every replica."""
        if window <= 0:
            return []
        return [
            t.decode() if isinstance(t, bytes) else t for t in await self.redis.lrange(self.recent_key, 0, window - 1)
        ]

    async def task_accepted(self, task: str, window: int) -> None:
        if window > 0:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.lpush(self.recent_key, task)
                pipe.ltrim(self.recent_key, 0, window - 1)
                await pipe.execute()

    async def next_draw(self) -> int:
        """Claim the run's next draw index; replicas never claim the same one."""
        return int(await self.redis.hincrby(self.key, DRAWS, 1)) - 1

    async def filtered(self, reason: str) -> None:
        await self.redis.hincrby(self.key, _FILTERED + reason, 1)

    async def group_made(self, task_type: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hincrby(self.key, GROUPS, 1)
            pipe.hincrby(self.key, _GROUPS_BY + task_type, 1)
            await pipe.execute()

    async def set_gauges(self, values: dict[str, float]) -> None:
        if values:
            await self.redis.hset(self.key, mapping={_GAUGE + k: v for k, v in values.items()})

    async def read(self) -> SynthesisRead:
        raw = {k.decode() if isinstance(k, bytes) else k: v for k, v in (await self.redis.hgetall(self.key)).items()}
        out = SynthesisRead(draws=int(raw.get(DRAWS, 0)), groups=int(raw.get(GROUPS, 0)))
        for field, value in raw.items():
            if field.startswith(_GROUPS_BY):
                out.groups_by_task_type[field.removeprefix(_GROUPS_BY)] = int(value)
            elif field.startswith(_FILTERED):
                out.filtered[field.removeprefix(_FILTERED)] = int(value)
            elif field.startswith(_GAUGE):
                out.diversity[field.removeprefix(_GAUGE)] = float(value)
        return out

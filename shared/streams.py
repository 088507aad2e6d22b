"""The Redis stream that carries scored episode groups from producers to the trainer.

One stream per run, one consumer group (``trainer``). An entry is acknowledged only after the
update that used it is durable; until then it stays pending and can be reclaimed. Entries that do
not parse are moved to a dead-letter stream, never dropped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from shared.schemas import EpisodeGroup

GROUP = "trainer"
FIELD = "group"


def stream_key(run_id: str) -> str:
    return f"pop:run:{run_id}:episodes"


def dead_letter_key(run_id: str) -> str:
    return f"pop:run:{run_id}:dead"


@dataclass
class Delivered:
    entry_id: str
    group: EpisodeGroup


class EpisodeStream:
    def __init__(self, redis: Redis, run_id: str) -> None:
        self.redis, self.run_id = redis, run_id
        self.key, self.dead_key = stream_key(run_id), dead_letter_key(run_id)

    async def append(self, group: EpisodeGroup) -> str:
        entry_id = await self.redis.xadd(self.key, {FIELD: group.model_dump_json()})
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    async def ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(self.key, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read(self, consumer: str, count: int, block_ms: int) -> list[Delivered]:
        """New entries for ``consumer``; malformed ones go to the dead-letter stream."""
        reply: Any = await self.redis.xreadgroup(GROUP, consumer, {self.key: ">"}, count=count, block=block_ms)
        delivered: list[Delivered] = []
        for _, entries in reply or []:
            delivered += await self._parse(entries)
        return delivered

    async def reclaim(self, consumer: str, min_idle_ms: int, count: int = 100) -> list[Delivered]:
        """Entries delivered but never acknowledged (a trainer died mid-step), taken over by ``consumer``.

        XAUTOCLAIM moves them to ``consumer`` without counting a new delivery, so ``entries-read``
        keeps meaning "entries ever handed to the trainer".
        """
        delivered: list[Delivered] = []
        cursor: Any = "0-0"
        while True:
            reply: Any = await self.redis.xautoclaim(self.key, GROUP, consumer, min_idle_ms, cursor, count=count)
            cursor, entries = reply[0], reply[1]
            delivered += await self._parse(entries)
            if cursor in (b"0-0", "0-0"):
                return delivered

    async def export(self, batch: int = 500) -> AsyncIterator[EpisodeGroup]:
        """Every group the stream still holds, oldest first, without touching the consumer group."""
        start = "-"
        while True:
            entries: Any = await self.redis.xrange(self.key, start, "+", count=batch)
            for delivered in await self._parse(entries, dead_letter=False):
                yield delivered.group
            if len(entries) < batch:
                return
            last = entries[-1][0]
            start = "(" + (last.decode() if isinstance(last, bytes) else str(last))

    async def _parse(self, entries: Any, dead_letter: bool = True) -> list[Delivered]:
        delivered: list[Delivered] = []
        for raw_id, fields in entries or []:
            entry_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
            payload = (fields or {}).get(FIELD.encode()) or (fields or {}).get(FIELD)
            try:
                delivered.append(Delivered(entry_id, EpisodeGroup.model_validate_json(payload or b"")))
            except ValidationError as exc:
                if dead_letter:
                    await self._dead_letter(entry_id, payload, str(exc))
        return delivered

    async def _dead_letter(self, entry_id: str, payload: bytes | str | None, error: str) -> None:
        await self.redis.xadd(self.dead_key, {"entry_id": entry_id, "payload": payload or b"", "error": error})
        await self.ack([entry_id])

    async def ack(self, entry_ids: list[str]) -> int:
        if not entry_ids:
            return 0
        return int(await self.redis.xack(self.key, GROUP, *entry_ids))

    async def length(self) -> int:
        return int(await self.redis.xlen(self.key))

    async def _group_info(self) -> dict[str, Any] | None:
        """XINFO GROUPS for the trainer's group; None when the stream or group does not exist yet."""
        try:
            groups = await self.redis.xinfo_groups(self.key)
        except ResponseError:
            return None
        for info in groups:
            name = info.get("name")
            if (name.decode() if isinstance(name, bytes) else name) == GROUP:
                return dict(info)
        return None

    async def backlog(self) -> int:
        """Entries not yet delivered to the trainer: what back-pressure bounds."""
        info = await self._group_info()
        lag = None if info is None else info.get("lag")
        return int(lag) if lag is not None else await self.length()

    async def pending(self) -> int:
        try:
            info = await self.redis.xpending(self.key, GROUP)
        except ResponseError:
            return 0
        return int(info.get("pending", 0))

    async def delivered_count(self) -> int:
        """Entries ever delivered to the consumer group (``entries-read``)."""
        info = await self._group_info()
        return 0 if info is None else int(info.get("entries-read") or 0)

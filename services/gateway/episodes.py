"""Sample episodes for people: pages of a run's scored groups, newest first, straight from its stream.

The stream is the record (the trainer acknowledges entries, it never deletes them), so what is shown
is exactly what the trainer read. Token ids and log-probabilities are left out: they are for the trainer.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from redis.asyncio import Redis

from shared.api import EpisodePage, EpisodeSample
from shared.schemas import EpisodeGroup
from shared.streams import FIELD, stream_key

ENTRY_ID = r"^\d+-\d+$"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def readable(group: EpisodeGroup) -> EpisodeGroup:
    episodes = [
        e.model_copy(
            update={
                "prompt_token_ids": [],
                "completion": e.completion.model_copy(update={"token_ids": [], "logprobs": []}),
            }
        )
        for e in group.episodes
    ]
    return group.model_copy(update={"episodes": episodes})


async def page(redis: Redis, run_id: str, limit: int, before: str | None) -> EpisodePage:
    key = stream_key(run_id)
    # One more than asked: whether an older page exists, without a second round trip.
    entries: Any = await redis.xrevrange(key, max=f"({before}" if before else "+", min="-", count=limit + 1)
    items: list[EpisodeSample] = []
    for raw_id, fields in entries[:limit]:
        payload = (fields or {}).get(FIELD.encode()) or (fields or {}).get(FIELD)
        try:
            group = EpisodeGroup.model_validate_json(payload or b"")
        except ValidationError:
            continue  # malformed entries are the trainer's dead letters, not samples
        items.append(EpisodeSample(entry_id=_text(raw_id), group=readable(group)))
    next_cursor = _text(entries[limit - 1][0]) if len(entries) > limit else None
    return EpisodePage(items=items, next_cursor=next_cursor, total=int(await redis.xlen(key)))

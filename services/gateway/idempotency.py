"""``Idempotency-Key`` on run creation: a client that retries (a timeout, a dropped connection) gets the
run its first request made instead of a second run. The key is stored with a digest of the config, in
the run's own transaction, so a concurrent duplicate loses on the primary key and replays too."""

from __future__ import annotations

import hashlib
import json

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.gateway import store
from shared.config import RunConfig
from shared.db import IdempotencyRecord, RunRecord
from shared.problems import ProblemError


def config_digest(config: RunConfig) -> str:
    """Of the validated config, so the same run asked for in JSON or in YAML is the same request."""
    canonical = json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def replay(session: AsyncSession, key: str, config: RunConfig) -> RunRecord | None:
    """The run an earlier request with ``key`` made, or None; 422 when that request asked for another run."""
    record = await session.get(IdempotencyRecord, key)
    if record is None:
        return None
    if record.request_hash != config_digest(config):
        raise ProblemError(
            422,
            "Idempotency-Key reused",
            f"key {key!r} was first used for a different run config (run {record.run_id})",
            run_id=record.run_id,
        )
    return await store.get_run(session, record.run_id)


async def create_once(session: AsyncSession, key: str, config: RunConfig) -> tuple[RunRecord, bool]:
    """(the run, whether it was made just now)."""
    earlier = await replay(session, key, config)
    if earlier is not None:
        return earlier, False
    try:
        run = await store.create_run(session, config, IdempotencyRecord(key=key, request_hash=config_digest(config)))
    except IntegrityError:  # a concurrent request with the same key committed first
        await session.rollback()
        earlier = await replay(session, key, config)
        if earlier is None:
            raise
        return earlier, False
    return run, True

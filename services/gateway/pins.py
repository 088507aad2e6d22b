"""Which checkpoints must stay on disk: what the training generator serves, and what an unfinished eval names.

The trainer prunes old versions (``trainer.keep_last``) through ``DELETE /v1/runs/{id}/checkpoints/{v}``;
the gateway, which knows both, answers 409 for a pinned one, so pruning never pulls weights from under
a generator that would need to reload them or an eval about to swap them in.
"""

from __future__ import annotations

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.clients.generator import GeneratorClient
from shared.clients.http import ServiceError
from shared.db import EvalRecord
from shared.evaluation.api import CheckpointTarget, EvalCreate, EvalStatus
from shared.problems import ProblemError

UNFINISHED = (EvalStatus.pending.value, EvalStatus.running.value)


async def pinned_by(session: AsyncSession, generator: GeneratorClient, run_id: str, version: int) -> list[str]:
    """Who holds ``run_id``'s ``version``: ``generator`` and/or ``eval <id>``; [] when nobody does."""
    holders = []
    try:
        served = await generator.policy()
    except (httpx.HTTPError, ServiceError) as exc:  # unknown is not "free": keep it until it answers
        raise ProblemError(503, "Generator unavailable", f"cannot tell whether it serves v{version}: {exc!r}") from exc
    if (served.run_id, served.version) == (run_id, version):
        holders.append("generator")
    evals = await session.scalars(select(EvalRecord).where(EvalRecord.status.in_(UNFINISHED)))
    for record in evals:
        targets = EvalCreate.model_validate(record.request).targets
        if any(isinstance(t, CheckpointTarget) and (t.run_id, t.version) == (run_id, version) for t in targets):
            holders.append(f"eval {record.id}")
    return holders

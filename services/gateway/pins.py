"""Which checkpoints must stay on disk: what the training generator serves, and what an unfinished eval names.

The trainer prunes old versions (``trainer.keep_last``) through ``DELETE /v1/runs/{id}/checkpoints/{v}``;
the gateway, which knows both, answers 409 for a pinned one, so pruning never pulls weights from under
a generator that would need to reload them or an eval about to swap them in.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.gateway import fleet
from services.gateway.fleet import FleetControl
from shared.db import EvalRecord
from shared.evaluation.api import CheckpointTarget, EvalCreate, EvalStatus
from shared.problems import ProblemError

UNFINISHED = (EvalStatus.pending.value, EvalStatus.running.value)


async def pinned_by(session: AsyncSession, control: FleetControl, run_id: str, version: int) -> list[str]:
    """Who holds ``run_id``'s ``version``: ``generator`` (any replica, or the fleet's target a replica behind
    will load) and/or ``eval <id>``; [] when nobody does."""
    holders = []
    wanted = await fleet.target(control.redis, control.spec)
    if wanted is not None and (wanted.run_id, wanted.version) == (run_id, version):
        holders.append("generator")
    for outcome in await control.generators.served_all():
        if outcome.error is not None:  # unknown is not "free": keep it until every replica answers
            detail = f"cannot tell whether {outcome.url} serves v{version}: {outcome.error!r}"
            raise ProblemError(503, "Generator unavailable", detail)
        if outcome.served is not None and (outcome.served.run_id, outcome.served.version) == (run_id, version):
            holders.append("generator")
    holders = list(dict.fromkeys(holders))
    evals = await session.scalars(select(EvalRecord).where(EvalRecord.status.in_(UNFINISHED)))
    for record in evals:
        targets = EvalCreate.model_validate(record.request).targets
        if any(isinstance(t, CheckpointTarget) and (t.run_id, t.version) == (run_id, version) for t in targets):
            holders.append(f"eval {record.id}")
    return holders

"""Eval jobs in SQL: accepting a request (every refusal names the field at fault, before anything is
queued), reading them back, and the guarded updates the eval runner makes."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import ColumnElement, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.gateway import store
from services.gateway.configs import invalid, judge_health
from shared.clients.generator import GeneratorClient
from shared.clients.http import ServiceError
from shared.config import RunConfig
from shared.db import EvalRecord, JudgeRecord
from shared.evaluation import EvalReport, Interval
from shared.evaluation.api import CheckpointTarget, EndpointTarget, EvalCreate, EvalFormat, EvalRead, EvalStatus
from shared.evaluation.sets import load_set
from shared.hosts import HostAllowlist
from shared.problems import ProblemError
from shared.schemas import utcnow
from shared.settings import GatewaySettings, reveal

TITLE = "Invalid eval request"
EVAL_GENERATOR_CHECK_S = 5.0


def refuse(loc: list[str | int], msg: str, kind: str) -> ProblemError:
    return invalid(loc, msg, kind, title=TITLE)


def set_path(eval_dir: Path, relative: str | None) -> Path | None:
    """``relative`` inside the eval folder, or a refusal: a request may not read arbitrary files."""
    if relative is None:
        return None
    root = eval_dir.resolve()
    path = (root / relative).resolve()
    if Path(relative).is_absolute() or not path.is_relative_to(root):
        raise refuse(["set", "path"], f"{relative!r} is not inside the eval folder (POP_GATEWAY_EVAL_DIR)", "path")
    if not path.is_file():
        raise refuse(["set", "path"], f"no file {relative!r} in the eval folder {root}", "path")
    return path


async def judge_url(session: AsyncSession, name: str | None, settings: GatewaySettings) -> str:
    if name is not None:
        judge = await session.get(JudgeRecord, name)
        if judge is None:
            raise refuse(["judge"], f"no judge registered as {name!r}", "judge")
        return judge.url
    if settings.judge_url is None:
        msg = "this set is graded by a judge: name a registered one (the deployment sets no POP_GATEWAY_JUDGE_URL)"
        raise refuse(["judge"], msg, "judge")
    return settings.judge_url


async def _check_checkpoint(session: AsyncSession, index: int, target: CheckpointTarget) -> RunConfig:
    try:
        run = await store.get_run(session, target.run_id)
    except ProblemError as exc:
        raise refuse(["targets", index, "run_id"], f"no run {target.run_id!r}", "run") from exc
    if target.version > run.policy_version:
        msg = f"run {run.id} has no version {target.version} (its newest is {run.policy_version})"
        raise refuse(["targets", index, "version"], msg, "version")
    if target.version > 0:
        await store.get_checkpoint(session, run.id, target.version)
    return RunConfig.model_validate(run.config)


async def eval_generator_health(url: str, token: str | None = None) -> None:
    """A checkpoint eval is refused at once (503) when the generator it needs does not answer."""
    generator = GeneratorClient(url, timeout_s=EVAL_GENERATOR_CHECK_S, token=token)
    try:
        await generator.policy()
    except (httpx.HTTPError, ServiceError) as exc:
        detail = f"the eval generator {url} does not answer ({exc!r}); is it running (compose: --profile eval)?"
        raise ProblemError(503, "Eval generator unavailable", detail) from exc
    finally:
        await generator.aclose()


async def accept(
    session: AsyncSession, body: EvalCreate, settings: GatewaySettings, allowed: HostAllowlist
) -> EvalRecord:
    """Check what can be checked now (the file parses, targets exist, the judge answers), then queue it."""
    try:
        path = set_path(settings.eval_dir, body.set.path)
        await asyncio.to_thread(load_set, body.set.format, path, body.set.limit)
    except (OSError, ValueError) as exc:  # ProblemError is neither
        raise refuse(["set", "path"], str(exc), "eval_set") from exc
    configs: dict[str, RunConfig] = {}
    for index, target in enumerate(body.targets):
        if isinstance(target, EndpointTarget):
            if (why := allowed.refusal(target.base_url)) is not None:
                raise refuse(["targets", index, "base_url"], why, "host")
            continue
        if settings.eval_generator_url is None:
            detail = "checkpoints are scored on an eval generator, and POP_GATEWAY_EVAL_GENERATOR_URL is unset"
            raise ProblemError(409, "No eval generator", detail)
        configs[target.run_id] = await _check_checkpoint(session, index, target)
    if configs and settings.eval_generator_url:
        await eval_generator_health(settings.eval_generator_url, reveal(settings.generator_token))
    run_id = body.scored_run
    if run_id is not None and run_id not in configs:
        try:
            configs[run_id] = RunConfig.model_validate((await store.get_run(session, run_id)).config)
        except ProblemError as exc:
            raise refuse(["run_id"], f"no run {run_id!r}", "run") from exc
    if body.set.format is not EvalFormat.ifeval:
        await judge_health(await judge_url(session, body.judge, settings))
    if body.set.format is EvalFormat.heldout:
        criteria = body.criteria
        if criteria is None:
            criteria = configs[run_id].judge.extra_criteria if run_id else []
        if not criteria:
            msg = "heldout answers are graded on fixed criteria: give criteria, or a run with judge.extra_criteria"
            raise refuse(["criteria"], msg, "criteria")
        body = body.model_copy(update={"criteria": criteria})
    record = EvalRecord(run_id=run_id, request=body.model_dump(mode="json"))
    session.add(record)
    await session.commit()
    return record


def to_read(record: EvalRecord) -> EvalRead:
    return EvalRead(
        id=record.id,
        status=EvalStatus(record.status),
        run_id=record.run_id,
        request=EvalCreate.model_validate(record.request),
        reports={label: EvalReport.model_validate(r) for label, r in record.reports.items()},
        gain=Interval.model_validate(record.gain) if record.gain else None,
        error=record.error,
        created_at=record.created_at,
        started_at=record.started_at,
        finished_at=record.finished_at,
    )


async def get_eval(session: AsyncSession, eval_id: str) -> EvalRecord:
    record = await session.get(EvalRecord, eval_id, populate_existing=True)
    if record is None:
        raise ProblemError(404, "No such eval", f"no eval {eval_id!r}")
    return record


async def list_evals(
    session: AsyncSession, run_id: str | None, statuses: list[EvalStatus] | None, limit: int, offset: int
) -> tuple[list[EvalRecord], int]:
    filters: list[ColumnElement[bool]] = []
    if run_id is not None:
        filters.append(EvalRecord.run_id == run_id)
    if statuses:
        filters.append(EvalRecord.status.in_([s.value for s in statuses]))
    query = select(EvalRecord).where(*filters).order_by(EvalRecord.created_at.desc(), EvalRecord.id)
    rows = await session.scalars(query.limit(limit).offset(offset))
    total = await session.scalar(select(func.count()).select_from(EvalRecord).where(*filters))
    return list(rows.all()), int(total or 0)


async def count_by_status(session: AsyncSession) -> dict[str, int]:
    """Every status, zeros included, so a dashboard's series never vanish."""
    rows = await session.execute(select(EvalRecord.status, func.count()).group_by(EvalRecord.status))
    return {status.value: 0 for status in EvalStatus} | {str(s): int(n) for s, n in rows.all()}


async def delete_eval(session: AsyncSession, eval_id: str) -> None:
    record = await get_eval(session, eval_id)
    if record.status == EvalStatus.running:
        raise ProblemError(409, "Cannot delete a running eval", f"eval {eval_id} is running; wait for it to end")
    await session.execute(delete(EvalRecord).where(EvalRecord.id == eval_id))
    await session.commit()


# --- the runner's side ------------------------------------------------------------------------------


async def claim(session: AsyncSession, worker: str, stale_before: datetime) -> EvalRecord | None:
    """The oldest pending eval, or a running one whose worker stopped beating (its gateway died); taken
    by a guarded UPDATE so two gateway replicas never run the same eval."""
    claimable = or_(
        EvalRecord.status == EvalStatus.pending.value,
        (EvalRecord.status == EvalStatus.running.value) & (EvalRecord.heartbeat_at < stale_before),
    )
    candidates = await session.scalars(select(EvalRecord).where(claimable).order_by(EvalRecord.created_at).limit(5))
    for record in candidates.all():
        now = utcnow()
        taken = await session.execute(
            update(EvalRecord)
            .where(EvalRecord.id == record.id, EvalRecord.status == record.status, _same_beat(record))
            .values(status=EvalStatus.running.value, worker=worker, heartbeat_at=now, started_at=now)
        )
        await session.commit()
        if taken.rowcount == 1:  # type: ignore[attr-defined]
            return await get_eval(session, record.id)
    return None


def _same_beat(record: EvalRecord) -> ColumnElement[bool]:
    column = EvalRecord.heartbeat_at
    return column.is_(None) if record.heartbeat_at is None else column == record.heartbeat_at


async def mine(session: AsyncSession, eval_id: str, worker: str, **values: Any) -> bool:
    """Update the eval while this worker holds it; False once it is gone (deleted, or taken over)."""
    result = await session.execute(
        update(EvalRecord).where(EvalRecord.id == eval_id, EvalRecord.worker == worker).values(**values)
    )
    await session.commit()
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]

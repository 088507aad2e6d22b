"""Run state operations on SQL; routes stay thin and every state change is one transaction."""

from __future__ import annotations

from pathlib import PurePath

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from shared.api import CheckpointRead, RunRead, RunStatus, StepRead, StepReport
from shared.config import RunConfig
from shared.db import CheckpointRecord, RunRecord, StepRecord
from shared.problems import ProblemError
from shared.schemas import CheckpointManifest

RECENT_STEPS = 3


def to_read(run: RunRecord, served_version: int | None = None) -> RunRead:
    steps = [StepRead.model_validate(s) for s in run.steps]
    scores = [s.mean_score for s in steps[-RECENT_STEPS:] if s.mean_score is not None]
    return RunRead(
        id=run.id,
        name=run.name,
        status=RunStatus(run.status),
        config=RunConfig.model_validate(run.config),
        step=run.step,
        policy_version=run.policy_version,
        served_version=served_version,
        recent_mean_score=sum(scores) / len(scores) if scores else None,
        checkpoint_dir=run.checkpoint_dir,
        error=run.error,
        trainer=run.trainer,
        created_at=run.created_at,
        updated_at=run.updated_at,
        steps=steps,
    )


async def get_run(session: AsyncSession, run_id: str) -> RunRecord:
    run = await session.scalar(select(RunRecord).where(RunRecord.id == run_id).options(selectinload(RunRecord.steps)))
    if run is None:
        raise ProblemError(404, "Run not found", f"no run with id {run_id!r}")
    return run


async def create_run(session: AsyncSession, config: RunConfig) -> RunRecord:
    run = RunRecord(name=config.name, status=RunStatus.pending.value, config=config.model_dump(mode="json"))
    session.add(run)
    await session.commit()
    return await get_run(session, run.id)


async def list_runs(
    session: AsyncSession, status: RunStatus | None, limit: int, offset: int
) -> tuple[list[RunRecord], int]:
    query = select(RunRecord).options(selectinload(RunRecord.steps))
    count = select(func.count()).select_from(RunRecord)
    if status is not None:
        query, count = (
            query.where(RunRecord.status == status.value),
            count.where(RunRecord.status == status.value),
        )
    rows = await session.scalars(query.order_by(RunRecord.created_at.desc()).limit(limit).offset(offset))
    return list(rows), int(await session.scalar(count) or 0)


async def claim_run(session: AsyncSession, trainer: str) -> RunRecord | None:
    """A run the trainer already owns and was running (it restarted: resume it), else the oldest
    pending run, taken exclusively by a guarded UPDATE."""
    owned = await session.scalar(
        select(RunRecord.id)
        .where(RunRecord.status == RunStatus.running.value, RunRecord.trainer == trainer)
        .order_by(RunRecord.created_at)
    )
    if owned is not None:
        return await get_run(session, owned)
    candidates = await session.scalars(
        select(RunRecord.id).where(RunRecord.status == RunStatus.pending.value).order_by(RunRecord.created_at)
    )
    for run_id in candidates.all():
        result = await session.execute(
            update(RunRecord)
            .where(RunRecord.id == run_id, RunRecord.status == RunStatus.pending.value)
            .values(status=RunStatus.running.value, trainer=trainer)
        )
        await session.commit()
        if result.rowcount == 1:  # type: ignore[attr-defined]
            return await get_run(session, run_id)
    return None


def _require_running(run: RunRecord) -> None:
    if run.status != RunStatus.running.value:
        raise ProblemError(409, "Run is not running", f"run {run.id} is {run.status}")


async def record_step(session: AsyncSession, run_id: str, report: StepReport) -> RunRecord:
    run = await get_run(session, run_id)
    _require_running(run)
    if report.step != run.step + 1:
        raise ProblemError(409, "Out-of-order step", f"run {run_id} is at step {run.step}, got {report.step}")
    session.add(
        StepRecord(
            run_id=run_id,
            step=report.step,
            policy_version=report.policy_version,
            mean_score=report.mean_score,
            metrics=report.metrics,
        )
    )
    session.add(
        CheckpointRecord(
            run_id=run_id,
            version=report.policy_version,
            step=report.step,
            path=report.checkpoint_path,
            manifest=report.manifest.model_dump(mode="json"),
        )
    )
    run.step, run.policy_version = report.step, report.policy_version
    run.checkpoint_dir = str(PurePath(report.checkpoint_path).parent)
    await session.commit()
    session.expire(run)
    return await get_run(session, run_id)


async def finish_run(session: AsyncSession, run_id: str, status: RunStatus, error: str | None) -> RunRecord:
    run = await get_run(session, run_id)
    if not status.terminal:
        raise ProblemError(422, "Not a final status", f"{status} does not end a run")
    if RunStatus(run.status).terminal:
        raise ProblemError(409, "Run already ended", f"run {run_id} is {run.status}")
    run.status, run.error = status.value, error
    await session.commit()
    session.expire(run)
    return await get_run(session, run_id)


async def list_checkpoints(session: AsyncSession, run_id: str) -> list[CheckpointRead]:
    await get_run(session, run_id)
    rows = await session.scalars(
        select(CheckpointRecord).where(CheckpointRecord.run_id == run_id).order_by(CheckpointRecord.version)
    )
    return [
        CheckpointRead(
            run_id=r.run_id,
            version=r.version,
            step=r.step,
            path=r.path,
            manifest=CheckpointManifest.model_validate(r.manifest),
            created_at=r.created_at,
        )
        for r in rows
    ]


async def get_checkpoint(session: AsyncSession, run_id: str, version: int) -> CheckpointRecord:
    row = await session.scalar(
        select(CheckpointRecord).where(CheckpointRecord.run_id == run_id, CheckpointRecord.version == version)
    )
    if row is None:
        raise ProblemError(404, "Checkpoint not found", f"run {run_id} has no version {version}")
    return row

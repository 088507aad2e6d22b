"""Run state operations on SQL; routes stay thin and every state change is one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePath

from sqlalchemy import ColumnElement, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from shared.api import (
    CheckpointRead,
    MetricPoint,
    MetricSeries,
    RewindCommand,
    RunRead,
    RunStatus,
    StepRead,
    StepReport,
)
from shared.config import RunConfig
from shared.db import CheckpointRecord, EvalRecord, IdempotencyRecord, RunRecord, StepRecord
from shared.problems import ProblemError
from shared.schemas import CheckpointManifest, new_id

RECENT_STEPS = 3
TERMINAL = tuple(s for s in RunStatus if s.terminal)


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


async def create_run(
    session: AsyncSession, config: RunConfig, idempotency: IdempotencyRecord | None = None
) -> RunRecord:
    run = RunRecord(
        id=new_id(), name=config.name, status=RunStatus.pending.value, config=config.model_dump(mode="json")
    )
    session.add(run)
    if idempotency is not None:
        await session.flush()  # the run's row first: the key refers to it
        idempotency.run_id = run.id
        session.add(idempotency)
    await session.commit()
    return await get_run(session, run.id)


async def list_runs(
    session: AsyncSession,
    statuses: Sequence[RunStatus] | None,
    limit: int,
    offset: int,
    name: str | None = None,
) -> tuple[list[RunRecord], int]:
    """A page of runs, newest first, and how many match in all; ``name`` matches a substring."""
    filters: list[ColumnElement[bool]] = []
    if statuses:
        filters.append(RunRecord.status.in_([s.value for s in statuses]))
    if name:
        filters.append(RunRecord.name.contains(name, autoescape=True))
    query = select(RunRecord).where(*filters).options(selectinload(RunRecord.steps))
    count = select(func.count()).select_from(RunRecord).where(*filters)
    rows = await session.scalars(query.order_by(RunRecord.created_at.desc(), RunRecord.id).limit(limit).offset(offset))
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


def _require(run: RunRecord, *allowed: RunStatus, action: str) -> None:
    if RunStatus(run.status) not in allowed:
        wanted = " or ".join(s.value for s in allowed)
        raise ProblemError(
            409, f"Cannot {action} a {run.status} run", f"run {run.id} is {run.status}; {action} needs {wanted}"
        )


async def record_step(session: AsyncSession, run_id: str, report: StepReport) -> RunRecord:
    """A paused run still takes the step its trainer was finishing when the pause came."""
    run = await get_run(session, run_id)
    _require(run, RunStatus.running, RunStatus.paused, action="record a step of")
    if report.step == run.step and report.policy_version == run.policy_version and run.steps:
        latest = run.steps[-1]
        if latest.step == report.step and latest.policy_version == report.policy_version:
            return run  # a retry of the report we already hold (its answer was lost): the same outcome
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


async def rewind_run(session: AsyncSession, run_id: str, command: RewindCommand) -> RunRecord:
    """Back to an earlier step (the trainer resumed from an older state): later steps and checkpoints go.
    Idempotent: a retry finds the run already there."""
    run = await get_run(session, run_id)
    _require(run, RunStatus.running, RunStatus.paused, action="rewind")
    if command.step > run.step or command.policy_version > run.policy_version:
        detail = f"run {run_id} is at step {run.step} (v{run.policy_version}); step {command.step} is not behind"
        raise ProblemError(409, "Not a rewind", detail)
    await session.execute(delete(StepRecord).where(StepRecord.run_id == run_id, StepRecord.step > command.step))
    await session.execute(
        delete(CheckpointRecord).where(
            CheckpointRecord.run_id == run_id, CheckpointRecord.version > command.policy_version
        )
    )
    run.step, run.policy_version = command.step, command.policy_version
    return await _saved(session, run)


async def finish_run(session: AsyncSession, run_id: str, status: RunStatus, error: str | None) -> RunRecord:
    run = await get_run(session, run_id)
    if not status.terminal:
        raise ProblemError(422, "Not a final status", f"{status} does not end a run")
    if RunStatus(run.status).terminal:
        raise ProblemError(409, "Run already ended", f"run {run_id} is {run.status}")
    run.status, run.error = status.value, error
    return await _saved(session, run)


async def pause_run(session: AsyncSession, run_id: str) -> RunRecord:
    """Producers stop feeding it and its trainer lets go of it after the step in hand."""
    run = await get_run(session, run_id)
    _require(run, RunStatus.running, RunStatus.pending, action="pause")
    run.status = RunStatus.paused.value
    return await _saved(session, run)


async def resume_run(session: AsyncSession, run_id: str) -> RunRecord:
    """Back to the queue: any trainer claims it and resumes from its newest checkpoint."""
    run = await get_run(session, run_id)
    _require(run, RunStatus.paused, action="resume")
    run.status, run.trainer = RunStatus.pending.value, None
    return await _saved(session, run)


async def delete_run(session: AsyncSession, run_id: str) -> RunRecord:
    """Its rows go; a run still in training must be paused or stopped first."""
    run = await get_run(session, run_id)
    _require(run, RunStatus.pending, RunStatus.paused, *TERMINAL, action="delete")
    for table in (EvalRecord, IdempotencyRecord, CheckpointRecord, StepRecord):
        await session.execute(delete(table).where(table.run_id == run_id))
    await session.execute(delete(RunRecord).where(RunRecord.id == run_id))
    await session.commit()
    return run


async def metric_series(session: AsyncSession, run_id: str, names: set[str] | None, after_step: int) -> MetricSeries:
    run = await get_run(session, run_id)
    points = [
        MetricPoint(
            step=s.step,
            policy_version=s.policy_version,
            created_at=s.created_at,
            mean_score=s.mean_score,
            values={k: float(v) for k, v in s.metrics.items() if names is None or k in names},
        )
        for s in run.steps
        if s.step > after_step
    ]
    return MetricSeries(run_id=run_id, names=sorted({k for s in run.steps for k in s.metrics}), points=points)


async def _saved(session: AsyncSession, run: RunRecord) -> RunRecord:
    run_id = run.id  # read before expiring: an expired attribute would load synchronously
    await session.commit()
    session.expire(run)
    return await get_run(session, run_id)


def checkpoint_read(record: CheckpointRecord) -> CheckpointRead:
    return CheckpointRead(
        run_id=record.run_id,
        version=record.version,
        step=record.step,
        path=record.path,
        manifest=CheckpointManifest.model_validate(record.manifest),
        created_at=record.created_at,
    )


async def list_checkpoints(session: AsyncSession, run_id: str) -> list[CheckpointRead]:
    await get_run(session, run_id)
    rows = await session.scalars(
        select(CheckpointRecord).where(CheckpointRecord.run_id == run_id).order_by(CheckpointRecord.version)
    )
    return [checkpoint_read(r) for r in rows]


async def get_checkpoint(session: AsyncSession, run_id: str, version: int) -> CheckpointRecord:
    row = await session.scalar(
        select(CheckpointRecord).where(CheckpointRecord.run_id == run_id, CheckpointRecord.version == version)
    )
    if row is None:
        raise ProblemError(404, "Checkpoint not found", f"run {run_id} has no version {version}")
    return row

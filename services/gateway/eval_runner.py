"""Runs queued evals in the gateway's background, one at a time.

Checkpoint targets are swapped onto the eval generator (``POP_GATEWAY_EVAL_GENERATOR_URL``) under a
Redis lock, so a training run's generator is never touched and two gateway replicas never swap the
eval generator under each other. Each target's report is saved as it finishes: an eval taken over
after its gateway died (its heartbeat went stale) goes on from the first target without one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from contextlib import AsyncExitStack, suppress
from datetime import timedelta
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.lock import Lock

from services.gateway import evals, swapping
from services.gateway.fleet import FleetControl
from shared.clients.generator import GeneratorClient, GeneratorFleet
from shared.clients.judge import JudgeClient
from shared.clients.llm import ChatClient
from shared.db import Database, EvalRecord
from shared.evaluation import EvalReport, paired_gain
from shared.evaluation.api import CheckpointTarget, EvalCreate, EvalFormat, EvalStatus, target_label
from shared.evaluation.sets import EvalItems, load_set, score
from shared.problems import ProblemError
from shared.schemas import Rubric, new_id, utcnow
from shared.settings import GatewaySettings, reveal

log = logging.getLogger(__name__)
POLL_S = 5.0
HEARTBEAT_S = 10.0
STALE_AFTER_S = 60.0
EVAL_GENERATOR_LOCK = "pop:eval-generator:lock"


class EvalFailed(Exception):
    pass


class EvalRunner:
    def __init__(self, db: Database, redis: Redis, settings: GatewaySettings) -> None:
        self.db, self.redis, self.settings = db, redis, settings
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{new_id()[:8]}"
        self.wakeup = asyncio.Event()

    def wake(self) -> None:
        """A new eval was queued: look now rather than at the next poll."""
        self.wakeup.set()

    async def serve(self) -> None:
        while True:
            try:
                record = await self._claim()
            except Exception:  # the database blinked: try again at the next poll
                log.exception("claiming an eval failed")
                record = None
            if record is None:
                self.wakeup.clear()
                with suppress(TimeoutError):
                    await asyncio.wait_for(self.wakeup.wait(), POLL_S)
                continue
            try:
                await self.run(record)
            except Exception:  # its heartbeat stops: it is taken over (and retried) once stale
                log.exception("eval %s could not be run or recorded", record.id)

    async def _claim(self) -> EvalRecord | None:
        async with self.db.session() as session:
            return await evals.claim(session, self.worker, utcnow() - timedelta(seconds=STALE_AFTER_S))

    async def _update(self, eval_id: str, **values: object) -> bool:
        async with self.db.session() as session:
            return await evals.mine(session, eval_id, self.worker, **values)

    async def run(self, record: EvalRecord) -> None:
        """Every target in order, then the paired gain of the last over the first; any error fails the
        eval with a message that says which target and why."""
        beat = asyncio.create_task(self._beat(record.id))
        status, error, gain = EvalStatus.completed, None, None
        try:
            request = EvalCreate.model_validate(record.request)
            reports = {label: EvalReport.model_validate(r) for label, r in record.reports.items()}
            await self._targets(record.id, request, reports)
            gain = _gain(list(reports.values()), request.sampling.seed)
        except asyncio.CancelledError:  # the gateway stops: another replica (or this one, restarted) goes on
            raise
        except Exception as exc:
            status, error = EvalStatus.failed, _why(exc)
            log.warning("eval %s failed: %s", record.id, error)
        finally:
            beat.cancel()
        await self._update(record.id, status=status.value, error=error, gain=gain, finished_at=utcnow())

    async def _targets(self, eval_id: str, request: EvalCreate, reports: dict[str, EvalReport]) -> None:
        path = evals.set_path(self.settings.eval_dir, request.set.path)
        items = await asyncio.to_thread(load_set, request.set.format, path, request.set.limit)
        rubric = Rubric(criteria=request.criteria) if request.criteria else None
        async with AsyncExitStack() as stack:
            judge = None
            if request.set.format is not EvalFormat.ifeval:
                async with self.db.session() as session:
                    url = await evals.judge_url(session, request.judge, self.settings)
                judge = JudgeClient(url, timeout_s=600)
                stack.push_async_callback(judge.aclose)
            for target in request.targets:
                label = target_label(target)
                if label in reports:
                    continue
                try:
                    if isinstance(target, CheckpointTarget):
                        reports[label] = await self._checkpoint(target, request, items, judge, rubric)
                    else:
                        reports[label] = await _score(target.base_url, target.model, request, items, judge, rubric)
                except Exception as exc:
                    raise EvalFailed(f"target {label}: {_why(exc)}") from exc
                dumped = {k: r.model_dump(mode="json") for k, r in reports.items()}
                if not await self._update(eval_id, reports=dumped):
                    raise EvalFailed("the eval was deleted or taken over by another gateway")

    async def _checkpoint(
        self,
        target: CheckpointTarget,
        request: EvalCreate,
        items: EvalItems,
        judge: JudgeClient | None,
        rubric: Rubric | None,
    ) -> EvalReport:
        url = self.settings.eval_generator_url
        if url is None:
            raise EvalFailed("POP_GATEWAY_EVAL_GENERATOR_URL is unset: checkpoints cannot be scored")
        lock = self.redis.lock(EVAL_GENERATOR_LOCK, timeout=STALE_AFTER_S)
        await lock.acquire()  # waits while another gateway replica evaluates on it
        holding = asyncio.create_task(self._hold(lock))
        generator = GeneratorClient(url, timeout_s=10.0, token=reveal(self.settings.generator_token))
        fleet = GeneratorFleet(url, timeout_s=10.0, token=reveal(self.settings.generator_token))
        control = FleetControl(fleet, self.redis, self.settings.swap_timeout_s)
        try:
            async with self.db.session() as session:
                swapped = await swapping.swap_to(
                    session, control, target.run_id, target.version, self.settings.swap_timeout_s
                )
            inference = self.settings.eval_generator_inference_url or url
            report = await _score(
                f"{inference}/v1", self.settings.eval_generator_model, request, items, judge, rubric,
                version=target.version, run_id=target.run_id,
            )  # fmt: skip
            served = await generator.policy()
            if (served.run_id, served.version) != (swapped.served.run_id, swapped.served.version):
                raise EvalFailed(f"the eval generator was swapped to {served.run_id} v{served.version} mid-eval")
            return report
        finally:
            holding.cancel()
            with suppress(asyncio.CancelledError):
                await holding
            with suppress(Exception):  # it expires on its own
                await lock.release()
            await generator.aclose()
            await control.generators.aclose()

    async def _hold(self, lock: Lock) -> None:
        """Keep the eval generator's lock alive for as long as the target takes."""
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            await lock.reacquire()

    async def _beat(self, eval_id: str) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            with suppress(Exception):  # a missed beat is only a missed beat
                await self._update(eval_id, heartbeat_at=utcnow())


async def _score(
    base_url: str,
    model: str,
    request: EvalCreate,
    items: EvalItems,
    judge: JudgeClient | None,
    rubric: Rubric | None,
    **where: Any,
) -> EvalReport:
    """One target's report, from the OpenAI-compatible API at ``base_url``."""
    llm = ChatClient(base_url, model, max_parallel=4)
    try:
        return await score(request.set.format, items, llm, judge, rubric, request.sampling, **where)
    finally:
        await llm.aclose()


def _gain(reports: list[EvalReport], seed: int) -> dict[str, float] | None:
    """The paired gain of the last target over the first; none for one target, or none in common."""
    if len(reports) < 2:
        return None
    try:
        return paired_gain(reports[0], reports[-1], seed=seed).model_dump()
    except ValueError:
        return None


def _why(exc: BaseException) -> str:
    if isinstance(exc, ProblemError):
        return f"{exc.title}: {exc.detail}" if exc.detail else exc.title
    return str(exc) or type(exc).__name__

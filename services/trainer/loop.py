"""One run's training loop: collect fresh groups, update, write the served version, report, swap;
every ``resume_every`` steps write the resumable state in the background and acknowledge.

The order is the durability contract: an entry is acknowledged only once a resumable state that
covers its update is on disk, so a crash before that redelivers it (it stays pending) and the
trainer, resumed from the state before, retrains it once, instead of losing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.trainer.breakdown import reward_breakdown
from services.trainer.checkpoint import remove_version, versions_on_disk
from services.trainer.ops import TrainerMetrics
from services.trainer.parallel import Message, Replicas
from services.trainer.policy import Policy
from services.trainer.resume import resume
from services.trainer.retry import persist
from services.trainer.saving import Saver
from services.trainer.transport import DiskTransport, WeightTransport, make_transport
from shared.api import FinishReport, RunRead, RunStatus, StepReport, SwapCommand
from shared.clients.gateway import GatewayClient
from shared.clients.generator import GeneratorFleet
from shared.clients.http import ServiceError
from shared.diversity import group_metrics
from shared.schemas import EpisodeGroup
from shared.settings import TrainerSettings, reveal
from shared.streams import Delivered, EpisodeStream

log = logging.getLogger(__name__)
SERVED_CHECK_S = 10.0
T = TypeVar("T")


class RunStopped(Exception):
    """The run was stopped from outside (the gateway answered 409)."""


class RunTrainer:
    def __init__(
        self,
        run: RunRead,
        settings: TrainerSettings,
        gateway: GatewayClient,
        redis: Redis,
        replicas: Replicas | None = None,
        metrics: TrainerMetrics | None = None,
    ) -> None:
        self.run, self.cfg, self.settings, self.gateway = run, run.config.trainer, settings, gateway
        self.replicas = replicas
        self.metrics = metrics or TrainerMetrics()
        url = settings.colocated_generator_url
        token = reveal(settings.colocated_generator_token)
        # Every replica on these cores (one URL, or a list): each is held during the update.
        self.generator = GeneratorFleet(url, timeout_s=settings.hold_seconds, token=token) if url else None
        self.stream = EpisodeStream(redis, run.id)
        self.counts: Counter[str] = Counter()
        self.version, self.step = run.policy_version, run.step
        self.policy: Policy | None = None
        self.reclaimed: list[Delivered] = []
        self.saver = Saver(run.id, run.config, settings, replicas)
        self.uncovered: list[str] = []
        """Entries trained (or dropped) since the last resumable state: acknowledged once one covers them."""
        self._covered_step = run.step
        self.summary: dict[str, Any] = {}
        self._served_checked = 0.0
        self.transport: WeightTransport = DiskTransport()

    async def train(self) -> None:
        self.metrics.watch(self.stream)
        try:
            await self.stream.ensure_group()
            resumed = await resume(self.run, self.settings, self.gateway, self.stream, self.saver, self.replicas)
            self.policy, self.step, self.version = resumed.policy, resumed.step, resumed.version
            self.counts, self.reclaimed, self._covered_step = resumed.counts, resumed.reclaimed, resumed.step
            self.metrics.policy_version.labels(self.run.id).set(self.version)
            self.transport = make_transport(self.settings, self.run.id, self.saver.dtype, self.cfg.weight_mode)
            self.saver.keep_gathered = self.transport.name == "nccl"
            if (self.version == 0 or resumed.rewound) and self.cfg.swap_after_update:
                # The generator may serve another run's weights, or a version about to be rewritten.
                command = SwapCommand(run_id=self.run.id, version=self.version)
                await self._call(f"swap to v{self.version}", lambda: self.gateway.swap(command))
            try:
                while self.step < self.cfg.max_steps:
                    await self._one_step(self.policy)
            except RunStopped:
                await self._save_state(self.policy)  # paused or stopped: the steps made so far are kept
                raise
            await self._save_state(self.policy)
            done = FinishReport(status=RunStatus.completed)
            await self._call("finish", lambda: self.gateway.finish_run(self.run.id, done))
            log.info("run %s completed after %d steps; %s", self.run.id, self.step, dict(self.counts))
        except RunStopped:
            log.info("run %s was stopped at step %d", self.run.id, self.step)
        except Exception as exc:
            log.exception("run %s failed", self.run.id)
            try:
                await self.gateway.finish_run(self.run.id, FinishReport(status=RunStatus.failed, error=repr(exc)))
            except Exception:  # the gateway may be down or the run already ended; the trainer lives on
                log.exception("could not report the failure of run %s", self.run.id)
        finally:
            self.metrics.watch(None)
            self.transport.close()
            if self.replicas is not None and self.policy is not None:
                self.replicas.broadcast(Message("release"))  # the other ranks free their copy too
            if self.generator is not None:
                await self.generator.aclose()

    async def collect(self, policy: Policy) -> tuple[list[EpisodeGroup], list[str], dict[str, str]]:
        """Read until ``groups_per_step`` fresh, informative groups are in hand: (groups, their entry
        ids, the groups dropped on the way with why). Nothing is acknowledged here; the step does it,
        after its checkpoint, so a crash re-delivers all of them and each is counted exactly once."""
        groups: list[EpisodeGroup] = []
        used: list[str] = []
        dropped: dict[str, str] = {}
        while len(groups) < self.cfg.groups_per_step:
            try:
                delivered = (
                    [self.reclaimed.pop(0)]
                    if self.reclaimed
                    else await self.stream.read(self.settings.consumer_name, 1, self.settings.read_block_ms)
                )
            except (RedisTimeoutError, RedisConnectionError) as exc:
                # A starved event loop or a Redis restart: nothing was acknowledged, so just read again.
                self.counts["redis_retries"] += 1
                log.warning("run %s: stream read failed (%r); retrying", self.run.id, exc)
                await asyncio.sleep(1.0)
                continue
            for item in delivered:
                group = item.group
                if group.policy_version < self.version - self.cfg.max_staleness:
                    self.counts["dropped_stale"] += 1
                    dropped[item.entry_id] = "stale"
                    await self._ensure_served()
                elif not policy.usable(group):
                    self.counts["dropped_no_signal"] += 1
                    dropped[item.entry_id] = "no_signal"
                else:
                    groups.append(group)
                    used.append(item.entry_id)
            if not delivered:
                await self._check_running()
        return groups, used, dropped

    async def _one_step(self, policy: Policy) -> None:
        started, counts_before = time.perf_counter(), Counter(self.counts)
        with self.metrics.phase("wait"):
            groups, entry_ids, dropped = await self.collect(policy)
        waited = time.perf_counter() - started
        with self.metrics.phase("update"):
            async with self._cores():
                result = await asyncio.to_thread(policy.update, groups)
        step, version = self.step + 1, self.version + 1
        self.counts["groups_trained"] += len(groups)
        rewards = [e.reward for g in groups for e in g.episodes if e.reward is not None]
        metrics = {
            **result.metrics,
            "groups": float(len(groups)),
            "reward_std": statistics.pstdev(rewards) if len(rewards) > 1 else 0.0,
            "staleness_max": float(max(self.version - g.policy_version for g in groups)),
            **{f"staleness_{k}": float(n) for k, n in Counter(self.version - g.policy_version for g in groups).items()},
            "groups_spanning_swap": float(sum(_spans_swap(g) for g in groups)),
            "wait_seconds": waited,
            **group_metrics(groups),
            **reward_breakdown(groups),
            "step_seconds": time.perf_counter() - started,
            **{k: float(v) for k, v in self.counts.items()},
        }
        summary = {"step": step, "policy_version": version, "metrics": metrics}
        summary["mean_score"] = statistics.fmean(rewards) if rewards else None
        with self.metrics.phase("checkpoint"):
            path, manifest = await asyncio.to_thread(self.saver.served, policy, version, step, entry_ids, dropped)
            self.step, self.version, self.summary = step, version, summary
            self.uncovered += [*entry_ids, *dropped]
            self.metrics.step(
                self.run.id, version, time.perf_counter() - started, counts_before, self.counts,
                result.metrics, rewards,
            )  # fmt: skip
            report = StepReport(checkpoint_path=str(path), manifest=manifest, **summary)
            recorded = await self._call(f"report step {step}", lambda: self.gateway.report_step(self.run.id, report))
            if step % self.cfg.resume_every == 0:
                await self._save_state(policy, wait=False)
            elif self.saver.state_done:
                await self._finish_state()
            await self._prune()
        gathered, self.saver.gathered = self.saver.gathered, None
        if self.cfg.swap_after_update:
            command = SwapCommand(run_id=self.run.id, version=version)
            with self.metrics.phase("swap"):
                if self.transport.name != "disk":  # pushed: the swap only records the version
                    if await asyncio.to_thread(self.transport.push, policy.model, version, gathered):
                        command = SwapCommand(run_id=self.run.id, version=version, transport="nccl")
                    else:
                        self.counts["weight_sync_fallbacks"] += 1
                swap = await self._call(f"swap to v{version}", lambda: self.gateway.swap(command))
            log.info(
                "run %s: step %d, generator serves v%d (%.2fs)",
                self.run.id,
                step,
                swap.served.version,
                swap.seconds,
            )
        log.info("run %s: step %d loss %.4f mean score %s", self.run.id, step, result.loss, report.mean_score)
        self._still_ours(recorded)

    async def _save_state(self, policy: Policy, wait: bool = True) -> None:
        """Write the resumable state of the step just made, unless one already covers it; ``wait``: until it
        is on disk and its entries acknowledged (the run's end, a pause). One state is written at a time."""
        await self._finish_state()
        if self.uncovered or self.step > self._covered_step:
            meta = {
                "step": self.step, "version": self.version, "covered": self.uncovered,
                "counts": dict(self.counts), "report": self.summary,
            }  # fmt: skip
            # Off the event loop: the copy to CPU memory takes a while for a large model (the ops port answers).
            await asyncio.to_thread(self.saver.begin_state, policy, self.step, meta)
            self.uncovered, self._covered_step = [], self.step
        if wait:
            await self._finish_state()

    async def _finish_state(self) -> None:
        written = await asyncio.to_thread(self.saver.finish_state)
        if written is not None:
            covered = list(written.meta["covered"])
            await persist("ack", lambda: self.stream.ack(covered), self.settings.retry_for_s)

    async def _prune(self) -> None:
        """Keep the newest ``keep_last`` versions; the gateway refuses (409) what the generator or an eval
        holds, and such a version stays until a later step finds it free."""
        keep, root = self.cfg.keep_last, Path(self.settings.checkpoint_dir)
        if keep <= 0:
            return
        for old in versions_on_disk(root, self.run.id)[:-keep]:
            try:
                await self.gateway.delete_checkpoint(self.run.id, old)
            except ServiceError as exc:
                if exc.status not in (404, 409, 503):
                    raise
                if exc.status != 404:  # 404: the gateway forgot it already (a retry); the folder goes
                    log.info("run %s: v%d kept for now (%s)", self.run.id, old, exc.problem.get("detail"))
                    continue
            except httpx.HTTPError as exc:
                log.info("run %s: pruning postponed, gateway unreachable (%r)", self.run.id, exc)
                return
            await asyncio.to_thread(remove_version, root, self.run.id, old)

    async def _ensure_served(self) -> None:
        """Stale groups keep coming: a restarted generator serves its base model until told otherwise,
        and producers would feed us its groups forever. Put our newest version back (at most every
        ``SERVED_CHECK_S``)."""
        if not self.cfg.swap_after_update or time.monotonic() < self._served_checked + SERVED_CHECK_S:
            return
        self._served_checked = time.monotonic()
        served = await self._call("served version", self.gateway.served)
        if (served.run_id, served.version) != (self.run.id, self.version):
            log.warning("run %s: the generator serves %s v%d, not v%d; swapping back",
                        self.run.id, served.run_id, served.version, self.version)  # fmt: skip
            self.counts["reswaps"] += 1
            command = SwapCommand(run_id=self.run.id, version=self.version)
            await self._call(f"swap back to v{self.version}", lambda: self.gateway.swap(command))

    @contextlib.asynccontextmanager
    async def _cores(self) -> AsyncIterator[None]:
        """Hold a colocated generator's generation for the update; if it cannot be held, train anyway."""
        if self.generator is None:
            yield
            return
        try:
            await self.generator.hold(self.settings.hold_seconds)
        except Exception as exc:
            log.warning("could not hold the colocated generator (%r); updating beside it", exc)
        try:
            yield
        finally:
            try:
                await self.generator.release()
            except Exception as exc:  # its lease ends the hold anyway
                log.warning("could not release the colocated generator (%r)", exc)

    async def _call(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """An idempotent gateway call, retried through restarts (of the gateway, its database, the
        generator); 409 means the run ended or was paused elsewhere, 404 that it was deleted."""
        try:
            return await persist(f"run {self.run.id}: {what}", call, self.settings.retry_for_s)
        except ServiceError as exc:
            if exc.status in (404, 409):
                raise RunStopped from exc
            raise

    async def _check_running(self) -> None:
        self._still_ours(await self._call("status", lambda: self.gateway.get_run(self.run.id)))

    def _still_ours(self, run: RunRead) -> None:
        """Paused, ended, or (paused and resumed meanwhile) handed to another trainer: let go of it."""
        if run.status is not RunStatus.running or run.trainer != self.settings.consumer_name:
            raise RunStopped


def _spans_swap(group: EpisodeGroup) -> bool:
    """Its answers came from more than one policy version (a swap landed while they were generated): kept,
    and trained with the behaviour log-probs each token carries."""
    versions = {e.policy_version for e in group.episodes}
    for e in group.episodes:
        if e.completion.policy_version is not None:
            versions.add(e.completion.policy_version)
    return len(versions) > 1

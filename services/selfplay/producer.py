"""Produce scored episode groups for one run: draw, propose, solve, grade, filter, append.

Every draw ends in exactly one of: a group on the stream, or a rejection counted by reason in the
run's synthesis ledger. A rejected group never reaches the trainer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter

from redis.asyncio import Redis

from services.selfplay import filters
from services.selfplay.corpus import CorpusSampler, Drawn, TaskMix
from services.selfplay.ops import SelfPlayMetrics
from services.selfplay.propose import constraint_criteria, propose_once, render_constraints
from services.selfplay.solve import solve, solve_messages
from shared.api import RunRead
from shared.clients.generator import GeneratorClient
from shared.clients.http import ServiceError
from shared.clients.judge import JudgeClient
from shared.clients.llm import ChatClient
from shared.corpus import open_corpus
from shared.diversity import distinct_n
from shared.schemas import Completion, Episode, EpisodeGroup, GradeRequest, ModelEndpoint, Rubric, Task, unique_names
from shared.settings import SelfPlaySettings, reveal
from shared.streams import EpisodeStream
from shared.synthesis import SynthesisLedger
from shared.tasktypes import TaskType, load_task_types

log = logging.getLogger(__name__)
RECENT_TASKS = 64


class RunProducer:
    """Feeds one run until cancelled; ``counts`` mirrors what this replica added to the ledger."""

    def __init__(
        self, run: RunRead, settings: SelfPlaySettings, redis: Redis, metrics: SelfPlayMetrics | None = None
    ) -> None:
        self.run, self.cfg, self.roles = run, run.config.selfplay, run.config.roles
        self.task_types: dict[str, TaskType] = load_task_types(self.cfg.task_mix, self.cfg.task_dirs)
        self.mix = TaskMix(self.cfg.task_mix, self.cfg.seed)
        self.sampler = CorpusSampler(
            open_corpus(self.cfg.corpus, self.cfg.id_field, self.cfg.text_field),
            self.cfg.seed,
            self.cfg.max_doc_words,
            chunk=self.cfg.long_documents == "chunk",
        )
        self.stream = EpisodeStream(redis, run.id)
        self.ledger = SynthesisLedger(redis, run.id)
        timeout = settings.request_timeout_s
        self.policy_llm = ChatClient(f"{settings.generator_url}/v1", settings.generator_model, timeout_s=timeout)
        self.proposer = self._client(self.roles.proposer, timeout)
        self.solver = self._client(self.roles.solver, timeout)
        # The served version is read on the admin port (until the producer reads the response headers).
        self.generator = GeneratorClient(settings.generator_admin_url, token=reveal(settings.generator_admin_token))
        self.judge = JudgeClient(run.config.judge.url or settings.judge_url, timeout_s=timeout)
        self.counts: Counter[str] = Counter()
        self.metrics = metrics or SelfPlayMetrics()

    def _client(self, endpoint: ModelEndpoint | None, timeout: float) -> ChatClient:
        return self.policy_llm if endpoint is None else ChatClient.for_endpoint(endpoint, timeout)

    async def aclose(self) -> None:
        clients = {id(c): c for c in (self.policy_llm, self.proposer, self.solver)}.values()
        await asyncio.gather(*(c.aclose() for c in clients), self.generator.aclose(), self.judge.aclose())

    async def run_forever(self) -> None:
        workers = [asyncio.create_task(self._worker()) for _ in range(self.cfg.concurrency)]
        try:
            await asyncio.gather(*workers)
        finally:
            for w in workers:
                w.cancel()

    async def _worker(self) -> None:
        while True:
            try:
                if await self.stream.backlog() >= self.cfg.max_stream_groups:
                    self.counts["throttled"] += 1
                    self.metrics.throttled.labels(self.run.id).inc()
                    await asyncio.sleep(0.5)
                    continue
                started = time.perf_counter()
                if await self.produce_group() is not None:
                    self.metrics.group_seconds.observe(time.perf_counter() - started)
            except Exception as exc:  # httpx, openai and redis each raise their own types
                # A service hiccup costs this document, never the producer: count it and go on.
                log.warning("run %s: group failed: %r", self.run.id, exc)
                with contextlib.suppress(Exception):  # Redis itself may be what failed
                    await self.reject("service_error")
                await asyncio.sleep(1.0)

    async def reject(self, reason: str) -> None:
        self.counts[f"filtered:{reason}"] += 1
        self.metrics.filtered.labels(self.run.id, reason).inc()
        await self.ledger.filtered(reason)

    async def next_document(self) -> tuple[Drawn, TaskType, str | None]:
        """Claim the run's next draw: the document chunk, its task type, and why it is unusable (if it is)."""
        g = await self.ledger.next_draw()
        drawn = await asyncio.to_thread(self.sampler.draw, g)
        self.counts["draws"] += 1
        reason = filters.document_rejection(drawn.document.text, drawn.words, self.cfg.min_doc_words, self.cfg.filters)
        if reason:
            await self.reject(reason)
        return drawn, self.task_types[self.mix.pick(g)], reason

    async def propose(self, drawn: Drawn, task_type: TaskType) -> Task | None:
        """A task that passes every filter, within ``propose_retries`` attempts; rejections counted."""
        for _ in range(self.cfg.propose_retries):
            proposal, reason = await propose_once(self.proposer, drawn.document, self.cfg, task_type)
            if proposal is not None:
                reason = filters.task_rejection(
                    proposal.task, proposal.reference, drawn.document.text, self.cfg.filters
                )
                if reason is None and await self._duplicate(proposal.task):
                    reason = "task_near_duplicate"
            if proposal is None or reason is not None:
                await self.reject(reason or "proposal_unparseable")
                continue
            await self.ledger.task_accepted(proposal.task, max(self.cfg.filters.duplicate_window, RECENT_TASKS))
            prompt, constraints = proposal.task.strip(), []
            if proposal.constraints is not None:
                prompt = f"{prompt}\n\n{render_constraints(proposal.constraints)}"
                constraints = constraint_criteria(proposal.constraints)
            return Task(
                document_id=drawn.ref.document_id,
                task_type=task_type.name,
                prompt=prompt,
                reference=proposal.reference.strip(),
                constraints=constraints,
                source=drawn.ref,
            )
        await self.reject("proposal_exhausted")
        return None

    async def _duplicate(self, task: str) -> bool:
        """Compared with the run's recent tasks from every replica, kept in Redis."""
        window = self.cfg.filters.duplicate_window
        return filters.near_duplicate(task, await self.ledger.recent_tasks(window), self.cfg.filters.duplicate_jaccard)

    async def produce_group(self) -> EpisodeGroup | None:
        drawn, task_type, rejected = await self.next_document()
        if rejected:
            return None
        task = await self.propose(drawn, task_type)
        if task is None:
            return None
        served = await self.generator.policy()
        if served.run_id not in (None, self.run.id):
            # The generator still serves another run's weights (this run's trainer has not swapped in
            # its base model yet): answers from them are not this run's policy.
            await self.reject("foreign_policy")
            await asyncio.sleep(1.0)
            return None
        before = served.version
        sampled = await solve(self.solver, task, task_type, self.cfg, on_policy=self.roles.solver is None)
        after = await self.generator.policy()
        if (after.version, after.run_id) != (before, served.run_id):
            # A swap landed while the answers were sampled: which weights made them is unknown.
            await self.reject("mixed_policy_version")
            return None
        try:
            grade = await self.judge.grade(self._grade_request(drawn, task, task_type, sampled.completions))
        except ServiceError as exc:
            if exc.status != 502:
                raise
            await self.reject("rubric_failed")
            return None
        task = task.model_copy(update={"rubric": grade.rubric})
        messages = solve_messages(task, task_type)
        episodes = [
            Episode(
                run_id=self.run.id,
                task_id=task.id,
                policy_version=before,
                prompt_messages=messages,
                prompt_token_ids=sampled.prompt_token_ids,
                completion=completion,
                verdicts=g.verdicts,
                reward=g.score,
            )
            for completion, g in zip(sampled.completions, grade.grades, strict=True)
        ]
        reason = filters.group_rejection([e.reward for e in episodes], self.cfg.filters)
        if reason:
            await self.reject(reason)
            return None
        group = EpisodeGroup(
            run_id=self.run.id, task=task, document_id=drawn.document.id, policy_version=before, episodes=episodes
        )
        await self.stream.append(group)
        await self._made(group)
        return group

    def _grade_request(
        self, drawn: Drawn, task: Task, task_type: TaskType, completions: list[Completion]
    ) -> GradeRequest:
        judge = self.run.config.judge
        criteria = [*task.constraints, *judge.extra_criteria]
        # Without a rubric writer the stated constraints and the run's criteria are the whole rubric.
        fixed = None if judge.write_rubric else Rubric(criteria=unique_names(criteria))
        return GradeRequest(
            document=drawn.document.text,
            task=task.prompt,
            reference=task.reference,
            answers=[c.text for c in completions],
            rubric=fixed,
            extra_criteria=criteria if fixed is None else [],
            rubric_guidance=task_type.rubric_guidance,
            judge_guidance=task_type.judge_guidance,
            rubric_writer=self.roles.rubric_writer,
            scorer=self.roles.scorer,
            grading=judge.grading,
        )

    async def _made(self, group: EpisodeGroup) -> None:
        self.counts["groups"] += 1
        self.metrics.groups.labels(self.run.id, group.task.task_type).inc()
        await self.ledger.group_made(group.task.task_type)
        recent = await self.ledger.recent_tasks(RECENT_TASKS)
        await self.ledger.set_gauges({"task_distinct_2_recent": distinct_n(recent)})
        log.info(
            "run %s: %s group from %s at v%d, rewards %s",
            self.run.id, group.task.task_type, group.document_id, group.policy_version,
            [None if r is None else round(r, 2) for r in group.rewards],
        )  # fmt: skip

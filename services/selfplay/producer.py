"""Produce scored episode groups for one run: propose, solve, grade, append to the stream."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

from redis.asyncio import Redis

from services.selfplay.corpus import CorpusSampler
from services.selfplay.roles import propose, solve, solve_messages
from shared.api import RunRead
from shared.clients.generator import GeneratorClient
from shared.clients.judge import JudgeClient
from shared.clients.llm import ChatClient
from shared.corpus import resolve_corpus
from shared.schemas import Episode, EpisodeGroup, GradeRequest
from shared.settings import SelfPlaySettings
from shared.streams import EpisodeStream

log = logging.getLogger(__name__)


class RunProducer:
    """Feeds one run until cancelled; ``counts`` says what happened to every document drawn."""

    def __init__(self, run: RunRead, settings: SelfPlaySettings, redis: Redis) -> None:
        self.run, self.cfg = run, run.config.selfplay
        self.stream = EpisodeStream(redis, run.id)
        self.sampler = CorpusSampler(
            resolve_corpus(self.cfg.corpus), self.cfg.seed, self.cfg.min_doc_words, self.cfg.max_doc_words
        )
        self.llm = ChatClient(
            f"{settings.generator_url}/v1", settings.generator_model, timeout_s=settings.request_timeout_s
        )
        self.generator = GeneratorClient(settings.generator_url)
        self.judge = JudgeClient(run.config.judge.url or settings.judge_url, timeout_s=settings.request_timeout_s)
        self.counts: Counter[str] = Counter()
        self.rejected: dict[str, int] = {}

    async def aclose(self) -> None:
        await asyncio.gather(self.llm.aclose(), self.generator.aclose(), self.judge.aclose())

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
                    await asyncio.sleep(0.5)
                    continue
                await self.produce_group()
            except Exception as exc:  # httpx, openai and redis each raise their own types
                # A service hiccup costs this document, never the producer: count it and go on.
                self.counts["errors"] += 1
                log.warning("run %s: group failed: %r", self.run.id, exc)
                await asyncio.sleep(1.0)

    async def produce_group(self) -> EpisodeGroup | None:
        doc = self.sampler.next()
        self.counts["documents"] += 1
        task = await propose(self.llm, doc, self.cfg, self.rejected)
        if task is None:
            self.counts["proposal_failed"] += 1
            return None
        before = (await self.generator.policy()).version
        sampled = await solve(self.llm, task, self.cfg)
        after = (await self.generator.policy()).version
        if before != after:
            # A swap landed while the answers were sampled: which weights made them is unknown.
            self.counts["mixed_version"] += 1
            return None
        grade = await self.judge.grade(
            GradeRequest(
                document=doc.text,
                task=task.prompt,
                reference=task.reference,
                answers=[c.text for c in sampled.completions],
                extra_criteria=self.run.config.judge.extra_criteria,
            )
        )
        task = task.model_copy(update={"rubric": grade.rubric})
        messages = solve_messages(task)
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
        if sum(e.reward is not None for e in episodes) < 2:
            self.counts["too_few_valid"] += 1
            return None
        group = EpisodeGroup(
            run_id=self.run.id, task=task, document_id=doc.id, policy_version=before, episodes=episodes
        )
        await self.stream.append(group)
        self.counts["groups"] += 1
        log.info(
            "run %s: group from %s at v%d, rewards %s",
            self.run.id, doc.id, before, [None if r is None else round(r, 2) for r in group.rewards],
        )  # fmt: skip
        return group

"""The bundled IFEval and HealthBench sample sets, answered by the real vLLM generator (tiny model) and
graded: IFEval by its programmatic checks, HealthBench by the real judge against each example's rubric."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from shared.clients.judge import JudgeClient
from shared.clients.llm import ChatClient
from shared.evaluation.healthbench import HEALTHBENCH_SAMPLE, load_healthbench
from shared.evaluation.ifeval import IFEVAL_SAMPLE, load_ifeval
from shared.evaluation.sets import evaluate_healthbench, evaluate_ifeval
from tests.processes import builtin_judge


@pytest.fixture(scope="module")
def judge_url(tiny_generator_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with builtin_judge(f"{tiny_generator_url}/v1", tmp_path_factory.mktemp("eval-judge")) as url:
        yield url


async def test_ifeval_sample_is_answered_and_graded_instruction_by_instruction(tiny_generator_url: str):
    items = load_ifeval(IFEVAL_SAMPLE)
    llm = ChatClient(f"{tiny_generator_url}/v1", "policy", max_parallel=4)
    try:
        report = await evaluate_ifeval(llm, items, n=2, max_tokens=24, temperature=1.0, seed=5, version=0)
    finally:
        await llm.aclose()
    instructions = {name for item in items for name in item.instruction_id_list}
    assert report.answers == 2 * len(items) and report.invalid == 0
    assert set(report.per_task) == {str(item.key) for item in items}
    assert set(report.by_criterion) == instructions
    assert set(report.by_task_type) == {name.split(":")[0] for name in instructions}
    assert all(v in (0.0, 0.5, 1.0) for v in report.per_task.values())  # 2 answers a prompt, each 0 or 1
    assert 0.0 <= report.reward.low <= report.reward.mean <= report.reward.high <= 1.0


async def test_healthbench_sample_is_graded_by_the_judge_against_each_rubric(tiny_generator_url: str, judge_url: str):
    items = load_healthbench(HEALTHBENCH_SAMPLE)
    llm = ChatClient(f"{tiny_generator_url}/v1", "policy", max_parallel=4)
    judge = JudgeClient(judge_url, timeout_s=300)
    try:
        report = await evaluate_healthbench(llm, judge, items, n=2, max_tokens=24, temperature=1.0, seed=5)
    finally:
        await asyncio.gather(llm.aclose(), judge.aclose())
    assert report.answers == 2 * len(items) and report.invalid < report.answers
    assert set(report.per_task) <= {item.prompt_id for item in items}
    assert set(report.by_task_type) <= {item.theme for item in items}
    for item in items:
        if item.prompt_id in report.per_task:  # met points over positive points: at most 1, pitfalls below 0
            worst = sum(r.points for r in item.rubrics if r.points < 0) / sum(
                r.points for r in item.rubrics if r.points > 0
            )
            assert worst <= report.per_task[item.prompt_id] <= 1.0

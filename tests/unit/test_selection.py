"""Pair selection (the paper's DPO data) and group-normalised advantages (GRPO)."""

import math

import pytest

from services.trainer.selection import group_advantages, select_pair, with_advantages
from shared.schemas import ChatMessage, Completion, Episode, EpisodeGroup, Task


def group(*answers: tuple[str, float | None]) -> EpisodeGroup:
    task = Task(document_id="d", prompt="q")
    episodes = [
        Episode(
            run_id="r",
            task_id=task.id,
            policy_version=0,
            prompt_messages=[ChatMessage(role="user", content="q")],
            completion=Completion(text=text),
            reward=reward,
        )
        for text, reward in answers
    ]
    return EpisodeGroup(run_id="r", task=task, document_id="d", policy_version=0, episodes=episodes)


def test_pair_is_best_vs_worst():
    pair = select_pair(group(("a b", 1.0), ("c d", 2.0), ("e f", 0.5), ("g", None)), 100)
    assert pair is not None
    assert (pair.chosen.completion.text, pair.rejected.completion.text) == ("c d", "e f")


def test_no_variance_group_gives_no_pair():
    assert select_pair(group(("a", 1.0), ("b", 1.0), ("c", 1.0)), 100) is None


def test_invalid_answers_never_enter_a_pair():
    assert select_pair(group(("a", 1.0), ("b", None), ("c", None)), 100) is None


def test_length_guard_drops_pairs_that_differ_too_much():
    long_answer = " ".join(["w"] * 150)
    assert select_pair(group((long_answer, 2.0), ("short", 0.0)), 100) is None
    assert select_pair(group((long_answer, 2.0), ("short", 0.0)), 200) is not None


def test_advantages_are_normalised():
    adv = group_advantages([0.0, 1.0, 2.0])
    assert adv == pytest.approx([-math.sqrt(1.5), 0.0, math.sqrt(1.5)])
    assert sum(adv) == pytest.approx(0.0)


def test_constant_scores_give_zero_advantage_without_nan():
    adv = group_advantages([1.5, 1.5, 1.5, 1.5])
    assert adv == [0.0, 0.0, 0.0, 0.0]
    assert not any(math.isnan(a) for a in adv)
    assert group_advantages([]) == []


def test_unscaled_advantages_are_mean_centred():
    assert group_advantages([0.0, 2.0], scale=False) == pytest.approx([-1.0, 1.0])


def test_with_advantages_skips_invalid_and_flat_groups():
    scored = with_advantages(group(("a", 0.0), ("b", None), ("c", 2.0)), scale=True)
    assert [e.completion.text for e in scored] == ["a", "c"]
    assert [e.advantage for e in scored] == pytest.approx([-1.0, 1.0])
    assert with_advantages(group(("a", 1.0), ("b", 1.0)), scale=True) == []

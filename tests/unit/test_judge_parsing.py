"""The judge's pure pieces: tolerant JSON parsing, verdict reading, answer spread, rubric merge."""

from __future__ import annotations

from services.judge import prompts
from services.judge.grader import _merge, _read_verdicts
from shared.clients.llm import parse_json_object
from shared.schemas import Criterion, WordCountCheck


def test_parse_json_object_is_tolerant():
    assert parse_json_object('{"a": 1}') == {"a": 1}
    assert parse_json_object('Sure! ```json\n{"a": 1}\n```') == {"a": 1}
    assert parse_json_object('{"a": "tab\there"}') == {"a": "tab\there"}  # raw control characters
    assert parse_json_object("no json here") is None
    assert parse_json_object("[1, 2]") is None


def test_read_verdicts_needs_every_criterion_with_a_valid_rating():
    criteria = [Criterion(name="a"), Criterion(name="b")]
    ok = _read_verdicts({"criterion_1": {"rating": 2, "reason": "r"}, "criterion_2": {"rating": 0}}, criteria)
    assert ok is not None and [(v.criterion, v.rating) for v in ok] == [("a", 2), ("b", 0)]
    assert _read_verdicts({"criterion_1": {"rating": 2}}, criteria) is None
    assert _read_verdicts({"criterion_1": {"rating": 3}, "criterion_2": {"rating": 0}}, criteria) is None
    assert _read_verdicts(None, criteria) is None


def test_answer_spread_is_sorted_by_length_and_evenly_spaced():
    answers = ["x" * n for n in (5, 1, 9, 3, 7, 2, 8, 4, 6)]
    assert [len(a) for a in prompts.answer_spread(answers, 3)] == [1, 5, 9]
    assert len(prompts.answer_spread(answers[:2], 4)) == 2


def test_extra_criteria_are_appended_and_never_clash():
    rubric = [Criterion(name="brief")]
    extra = [Criterion(name="brief", check=WordCountCheck(max_words=5))]
    merged = _merge(rubric, extra)
    assert [c.name for c in merged] == ["brief", "brief (extra)"]
    assert merged[1].programmatic


def test_verdict_schema_pins_every_criterion():
    schema = prompts.verdict_schema(3)
    assert schema["required"] == ["criterion_1", "criterion_2", "criterion_3"]
    assert schema["properties"]["criterion_1"]["properties"]["rating"]["enum"] == [0, 1, 2]


def test_scorer_prompt_never_contains_the_document():
    messages = prompts.score_messages("Task?", [Criterion(name="c", gold="GOLD-FACT")], "answer")
    text = " ".join(m.content for m in messages)
    assert "GOLD-FACT" in text and "Document" not in text


def test_repeated_criterion_names_get_suffixes():
    from services.judge.grader import _dedupe

    names = [c.name for c in _dedupe([Criterion(name="a"), Criterion(name="a"), Criterion(name="b")])]
    assert names == ["a", "a (2)", "b"]

"""The judge's pure pieces: tolerant JSON parsing, verdict reading, answer spread, rubric merge."""

from __future__ import annotations

from services.judge import prompts
from services.judge.grader import merge
from services.judge.rubric_writer import out_of_bounds
from services.judge.verdicts import read_verdicts
from shared.clients.llm import parse_json_object
from shared.schemas import Criterion, Rubric, WordCountCheck, unique_names


def test_parse_json_object_is_tolerant():
    assert parse_json_object('{"a": 1}') == {"a": 1}
    assert parse_json_object('Sure! ```json\n{"a": 1}\n```') == {"a": 1}
    assert parse_json_object('{"a": "tab\there"}') == {"a": "tab\there"}  # raw control characters
    assert parse_json_object("no json here") is None
    assert parse_json_object("[1, 2]") is None


def test_read_verdicts_needs_every_criterion_with_a_valid_rating():
    criteria = [Criterion(name="a"), Criterion(name="b")]

    def read(data: dict[str, object] | None) -> list[tuple[str, int]] | None:
        verdicts = read_verdicts(data, criteria, "pop", "llm:m")
        return None if verdicts is None else [(v.criterion, v.rating) for v in verdicts]

    assert read({"criterion_1": {"rating": 2, "reason": "r"}, "criterion_2": {"rating": 0}}) == [("a", 2), ("b", 0)]
    assert read({"criterion_1": {"rating": 2}}) is None
    assert read({"criterion_1": {"rating": 3}, "criterion_2": {"rating": 0}}) is None
    assert read({"criterion_1": {"rating": True}, "criterion_2": {"rating": 0}}) is None
    assert read(None) is None


def test_healthbench_verdicts_are_met_or_not():
    criteria = [Criterion(name="a", points=5), Criterion(name="b", points=-2)]
    verdicts = read_verdicts(
        {"criterion_1": {"met": True, "reason": "r"}, "criterion_2": {"met": False}}, criteria, "healthbench", "llm:m"
    )
    assert verdicts is not None and [(v.met, v.rating, v.backend) for v in verdicts] == [
        (True, 2, "llm:m"),
        (False, 0, "llm:m"),
    ]
    assert (
        read_verdicts({"criterion_1": {"met": 1}, "criterion_2": {"met": False}}, criteria, "healthbench", "m") is None
    )


def test_written_rubrics_out_of_bounds_are_named():
    good = {"name": "n", "description": "d", "gold": "g", "weight": 3}
    assert out_of_bounds({"criteria": [good]}) is None
    assert out_of_bounds(None) == "unparseable"
    assert out_of_bounds({"criteria": []}) == "criteria_count"
    assert out_of_bounds({"criteria": [good] * 6}) == "criteria_count"
    assert out_of_bounds({"criteria": [{**good, "gold": " "}]}) == "empty_gold"
    assert out_of_bounds({"criteria": [{**good, "weight": 9}]}) == "weight_out_of_range"
    assert out_of_bounds({"criteria": [{**good, "name": ""}]}) == "unnamed_criterion"


def test_answer_spread_is_sorted_by_length_and_evenly_spaced():
    answers = ["x" * n for n in (5, 1, 9, 3, 7, 2, 8, 4, 6)]
    assert [len(a) for a in prompts.answer_spread(answers, 3)] == [1, 5, 9]
    assert len(prompts.answer_spread(answers[:2], 4)) == 2


def test_extra_criteria_are_appended_and_never_clash():
    rubric = Rubric(criteria=[Criterion(name="brief")])
    extra = [Criterion(name="brief", weight=2, check=WordCountCheck(max_words=5))]
    merged = merge(rubric, extra)
    assert [c.name for c in merged] == ["brief", "brief (extra)"]
    assert merged[1].programmatic
    healthbench = Rubric(format="healthbench", criteria=[Criterion(name="a", points=5)])
    assert merge(healthbench, extra)[1].points == 2  # worth its weight


def test_verdict_schema_pins_every_criterion():
    schema = prompts.verdict_schema(3)
    assert schema["required"] == ["criterion_1", "criterion_2", "criterion_3"]
    assert schema["properties"]["criterion_1"]["properties"]["rating"]["enum"] == [0, 1, 2]


def test_scorer_prompt_never_contains_the_document():
    messages = prompts.score_messages("Task?", [Criterion(name="c", gold="GOLD-FACT")], "answer")
    text = " ".join(m.content for m in messages)
    assert "GOLD-FACT" in text and "Document" not in text


def test_repeated_criterion_names_get_suffixes():
    names = [c.name for c in unique_names([Criterion(name="a"), Criterion(name="a"), Criterion(name="b")])]
    assert names == ["a", "a (2)", "b"]

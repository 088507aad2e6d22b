"""Both scoring rules (pop and HealthBench) and the programmatic criteria, on hand-computed cases."""

import pytest

from services.judge.scoring import healthbench_overall, healthbench_score, weighted_score
from shared.checks import grade_programmatic, registered_checks
from shared.schemas import Criterion, MentionCheck, Rubric, Verdict, WordCountCheck


def crit(name: str, weight: int) -> Criterion:
    return Criterion(name=name, description="d", gold="g", weight=weight)


def test_weighted_score_uses_weights_and_ratings():
    criteria = [crit("a", 3), crit("b", 1)]
    verdicts = [Verdict(criterion="a", rating=2), Verdict(criterion="b", rating=0)]
    assert weighted_score(criteria, verdicts) == pytest.approx((3 * 2 + 1 * 0) / 4)


@pytest.mark.parametrize(("ratings", "expected"), [((0, 0), 0.0), ((1, 1), 1.0), ((2, 2), 2.0), ((2, 1), 1.8)])
def test_score_spans_zero_to_two(ratings, expected):
    criteria = [crit("a", 4), crit("b", 1)]
    verdicts = [Verdict(criterion=c.name, rating=r) for c, r in zip(criteria, ratings, strict=True)]
    assert weighted_score(criteria, verdicts) == pytest.approx(expected)


def test_missing_verdict_makes_the_answer_invalid_not_zero():
    criteria = [crit("a", 1), crit("b", 1)]
    assert weighted_score(criteria, [Verdict(criterion="a", rating=2)]) is None
    assert weighted_score([], []) is None


def test_rating_outside_0_1_2_is_refused():
    with pytest.raises(ValueError):
        Verdict(criterion="a", rating=3)


def test_word_count_check():
    c = Criterion(name="len", check=WordCountCheck(min_words=2, max_words=4))
    assert grade_programmatic(c, "one two three").rating == 2
    assert grade_programmatic(c, "one").rating == 0
    assert grade_programmatic(c, "a b c d e").rating == 0


def test_mention_checks_match_whole_words_case_insensitively():
    must = Criterion(name="m", check=MentionCheck(type="must_mention", terms=["Paris", "Seine"]))
    assert grade_programmatic(must, "paris lies on the seine").rating == 2
    assert grade_programmatic(must, "Paris only").rating == 0
    any_of = Criterion(name="any", check=MentionCheck(type="must_mention", terms=["x1", "Paris"], match="any"))
    assert grade_programmatic(any_of, "Paris only").rating == 2
    never = Criterion(name="n", check=MentionCheck(type="must_not_mention", terms=["document"]))
    assert grade_programmatic(never, "As the documentary shows").rating == 2
    assert grade_programmatic(never, "The Document says").rating == 0


def test_word_count_bounds_validated():
    with pytest.raises(ValueError):
        WordCountCheck(min_words=10, max_words=5)


def test_healthbench_score_is_met_points_over_positive_points():
    rubric = Rubric.healthbench(
        [
            {"criterion": "Advises seeing a doctor within a day", "points": 5},
            {"criterion": "Names the most likely cause", "points": 3},
            {"criterion": "Recommends antibiotics without a prescription", "points": -4},
        ]
    )
    c = rubric.criteria

    def met(*flags: bool) -> list[Verdict]:
        return [Verdict(criterion=x.name, rating=2 if f else 0, met=f) for x, f in zip(c, flags, strict=False)]

    assert healthbench_score(c, met(True, True, False)) == pytest.approx(1.0)
    assert healthbench_score(c, met(True, False, False)) == pytest.approx(5 / 8)
    assert healthbench_score(c, met(False, False, True)) == pytest.approx(-4 / 8)  # a pitfall alone
    assert healthbench_score(c, met(True, True, True)) == pytest.approx(4 / 8)
    assert healthbench_score(c, met(True, True)) is None  # a missing verdict is invalid, not 0
    assert healthbench_overall([1.0, -0.5, None, 0.2]) == pytest.approx(0.7 / 3)
    assert healthbench_overall([-0.5, -1.0]) == 0.0 and healthbench_overall([1.0, 1.0]) == 1.0
    assert healthbench_overall([None]) is None


def test_rubric_formats_are_checked():
    with pytest.raises(ValueError, match="non-zero integer points"):
        Rubric(format="healthbench", criteria=[Criterion(name="a")])
    with pytest.raises(ValueError, match="at least one criterion with positive points"):
        Rubric(format="healthbench", criteria=[Criterion(name="a", points=-1)])
    with pytest.raises(ValueError, match="points belong to healthbench"):
        Rubric(criteria=[Criterion(name="a", points=3)])
    with pytest.raises(ValueError, match="unique"):
        Rubric(criteria=[Criterion(name="a"), Criterion(name="a")])


def test_regex_json_and_language_checks():
    def grade(check: object, answer: str) -> int:
        return grade_programmatic(Criterion.model_validate({"name": "c", "check": check}), answer).rating

    assert grade({"type": "regex", "pattern": r"\b\d{4}\b"}, "Published in 1815.") == 2
    assert grade({"type": "regex", "pattern": r"\b\d{4}\b"}, "Published long ago.") == 0
    assert grade({"type": "regex", "pattern": "sorry", "must_match": False, "ignore_case": True}, "SORRY!") == 0
    with pytest.raises(ValueError, match="not a valid regular expression"):
        Criterion.model_validate({"name": "c", "check": {"type": "regex", "pattern": "(unclosed"}})
    assert grade({"type": "json_valid", "required_keys": ["city"]}, '{"city": "Paris"}') == 2
    assert grade({"type": "json_valid"}, 'Here:\n```json\n{"a": 1}\n```') == 2
    assert grade({"type": "json_valid", "required_keys": ["year"]}, '{"city": "Paris"}') == 0
    assert grade({"type": "json_valid"}, "[1, 2]") == 0 and grade({"type": "json_valid"}, "not json") == 0
    french = "Le diabète de type 2 est une maladie chronique qui touche des millions de personnes."
    assert grade({"type": "language", "language": "fr"}, french) == 2
    assert grade({"type": "language", "language": "en"}, french) == 0
    assert grade({"type": "language", "language": "en"}, "") == 0


def test_every_check_type_is_registered_by_name():
    assert registered_checks() == ["json_valid", "language", "must_mention", "must_not_mention", "regex", "word_count"]
    verdict = grade_programmatic(Criterion(name="len", points=2, check=WordCountCheck(max_words=3)), "one two")
    assert verdict.met is True and verdict.backend == "programmatic:word_count"

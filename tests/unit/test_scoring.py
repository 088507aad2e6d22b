"""The method's scoring rule and the programmatic criteria, on hand-computed cases."""

import pytest

from services.judge.scoring import weighted_score
from shared.checks import grade_programmatic
from shared.schemas import Criterion, MentionCheck, Verdict, WordCountCheck


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

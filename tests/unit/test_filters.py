"""Every synthesis filter rejects a crafted bad case and lets a good one through."""

from __future__ import annotations

import pytest

from services.selfplay import filters
from services.selfplay.propose import Constraints, constraint_criteria, parse, render_constraints
from shared.config import FilterConfig
from shared.corpus import builtin_corpus_path, iter_documents
from shared.tasktypes import load_task_types

CFG = FilterConfig()
GOOD_DOC = next(iter_documents(builtin_corpus_path())).text
GOOD_TASK = "Which hormone do the cells of people with type 2 diabetes respond poorly to, and what follows?"
REFERENCE = "Insulin: the cells become resistant to it, so blood sugar rises while the pancreas wears out."


def test_documents_too_short_or_boilerplate_are_rejected():
    assert filters.document_rejection(GOOD_DOC, len(GOOD_DOC.split()), 50, CFG) is None
    assert filters.document_rejection("Too short to teach anything.", 5, 50, CFG) == "doc_too_short"
    nav = "\n".join(["Home | About | Contact", "Sign in to subscribe to our newsletter", "Accept cookies"] * 20)
    assert filters.document_rejection(nav, len(nav.split()), 50, CFG) == "doc_boilerplate"
    table = " ".join(["1,234", "5.6%", "$78", "| 9 |"] * 40)
    assert filters.document_rejection(table, 160, 50, CFG) == "doc_boilerplate"
    repeated = "buy now " * 100
    assert filters.document_rejection(repeated, 200, 50, CFG) == "doc_boilerplate"
    assert filters.document_rejection(nav, len(nav.split()), 50, FilterConfig(boilerplate=False)) is None


@pytest.mark.parametrize(
    ("task", "reason"),
    [
        ("", "task_empty"),
        ("Explain.", "task_empty"),
        ("Why " + "really " * 130 + "?", "task_too_long"),
        ("According to the text, which hormone do cells resist?", "task_refers_to_document"),
        ("What does the above passage say about insulin resistance?", "task_refers_to_document"),
        ("Summarise the given article about diabetes.", "task_refers_to_document"),
        ("In this document, what wears out?", "task_refers_to_document"),
        (
            "Is it true that the cells become resistant to it, so blood sugar rises while the pancreas wears out?",
            "task_leaks_reference",
        ),
        (GOOD_TASK, None),
    ],
)
def test_task_filters(task: str, reason: str | None):
    assert filters.task_rejection(task, REFERENCE, GOOD_DOC, CFG) == reason


def test_a_short_reference_leaks_when_the_task_names_it():
    leaky = "Is the hormone that cells resist insulin or glucagon?"
    assert filters.task_rejection(leaky, "Insulin", GOOD_DOC, CFG) == "task_leaks_reference"
    fine = "Which hormone do cells resist in type 2 diabetes?"
    assert filters.task_rejection(fine, "Insulin", GOOD_DOC, CFG) is None


def test_a_task_that_copies_the_document_hands_it_to_the_solver():
    copied = " ".join(GOOD_DOC.split()[:25])
    assert filters.task_rejection(copied, REFERENCE, GOOD_DOC, CFG) == "task_copies_document"
    assert filters.task_rejection(f"Explain why: {copied}", REFERENCE, GOOD_DOC, CFG) == "task_copies_document"
    assert filters.task_rejection(GOOD_TASK, REFERENCE, GOOD_DOC, CFG) is None


def test_near_duplicate_tasks_are_rejected_and_distinct_ones_kept():
    threshold = CFG.duplicate_jaccard
    assert filters.near_duplicate(GOOD_TASK.replace("poorly", "badly"), [GOOD_TASK], threshold)
    assert filters.near_duplicate(GOOD_TASK.lower() + "  ", ["Unrelated words here.", GOOD_TASK], threshold)
    poem = "Write a short poem about the first lighthouse keepers of the Scottish coast."
    assert not filters.near_duplicate(poem, [GOOD_TASK], threshold)
    assert not filters.near_duplicate(GOOD_TASK, [], threshold)


def test_groups_without_signal_or_valid_answers_are_rejected():
    assert filters.group_rejection([2.0, 0.5, None, 1.0], CFG) is None
    assert filters.group_rejection([1.0, 1.0, 1.0, 1.0], CFG) == "no_score_variance"
    assert filters.group_rejection([2.0, None, None, None], CFG) == "too_few_valid_answers"
    assert filters.group_rejection([None, None], CFG) == "too_few_valid_answers"
    assert filters.group_rejection([1.0, 1.25], FilterConfig(min_score_range=0.5)) == "no_score_variance"


INSTRUCTION = load_task_types(["instruction_following"])["instruction_following"]
QA = load_task_types(["long_form_qa"])["long_form_qa"]


def test_instruction_following_constraints_are_parsed_checked_and_stated():
    data = {
        "task": "Explain insulin resistance to a teenager.",
        "reference": "Insulin resistance means the body's cells ignore insulin, so sugar stays in the blood.",
        "constraints": {"max_words": 25, "must_mention": ["insulin", " sugar "], "must_not_mention": ["glucagon"]},
    }
    proposal, reason = parse(data, INSTRUCTION)
    assert reason is None and proposal is not None and proposal.constraints is not None
    assert proposal.constraints.must_mention == ["insulin", "sugar"]
    criteria = constraint_criteria(proposal.constraints)
    assert [c.check.type for c in criteria if c.check] == ["word_count", "must_mention", "must_not_mention"]
    assert "at most 25 words" in render_constraints(proposal.constraints)
    assert '"glucagon"' in render_constraints(proposal.constraints)


@pytest.mark.parametrize(
    ("constraints", "reason"),
    [
        ({"max_words": 25, "must_mention": ["Insulin"], "must_not_mention": ["insulin"]}, "constraints_contradict"),
        ({"max_words": 25, "must_mention": ["pancreas"], "must_not_mention": []}, "reference_breaks_constraints"),
        ({"max_words": 25, "must_mention": [], "must_not_mention": ["sugar"]}, "reference_breaks_constraints"),
        (None, "proposal_unparseable"),
    ],
)
def test_bad_constraints_are_rejected(constraints: dict[str, object] | None, reason: str):
    data = {"task": "Explain insulin resistance.", "reference": "Cells ignore insulin; sugar stays high."}
    if constraints is not None:
        data["constraints"] = constraints  # type: ignore[assignment]
    assert parse(data, INSTRUCTION) == (None, reason)


def test_a_reference_over_the_word_limit_breaks_its_constraints():
    long = " ".join(["insulin"] * 30)
    data = {"task": "Explain.", "reference": long, "constraints": {"max_words": 25, "must_mention": []}}
    data["constraints"]["must_not_mention"] = []  # type: ignore[index]
    assert parse(data, INSTRUCTION) == (None, "reference_breaks_constraints")
    assert Constraints(max_words=25).must_mention == []


def test_unparseable_proposals_and_plain_types_ignore_constraints():
    assert parse(None, QA) == (None, "proposal_unparseable")
    assert parse({"task": "x"}, QA) == (None, "proposal_unparseable")
    proposal, _ = parse({"task": "t", "reference": "r", "constraints": {"max_words": 25}}, QA)
    assert proposal is not None and proposal.constraints is None

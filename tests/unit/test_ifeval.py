"""IFEval-style checks, instruction by instruction: a response that follows it and one that does not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shared.evaluation.ifeval import IFEVAL_SAMPLE, INSTRUCTIONS, IFEvalItem, load_ifeval

CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("keywords:existence", {"keywords": ["river", "Bridge"]}, "The bridge spans the river.", "The bridge is old."),
    ("keywords:frequency", {"keyword": "tea", "frequency": 3, "relation": "at least"},
     "Tea, green tea and black tea.", "Tea and coffee, tea."),
    ("keywords:frequency", {"keyword": "tea", "frequency": 2, "relation": "less than"}, "One tea.", "Tea, tea."),
    ("keywords:forbidden_words", {"forbidden_words": ["very", "really"]},
     "An everyday example.", "A Very good example."),  # "everyday" holds "very" but is not the word
    ("keywords:letter_frequency", {"letter": "z", "let_frequency": 2, "let_relation": "at least"},
     "Zebras zigzag.", "Zebras run."),
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": "less than"},
     "One. Two.", "One. Two. Three."),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "First part.\n***\nSecond part.",
     "First part.\n***\n***\nSecond part."),  # an empty paragraph does not count
    ("length_constraints:number_words", {"num_words": 5, "relation": "at least"},
     "one two three four five", "one two three four"),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "then"},
     "First we wait.\n\nThen, we go.", "First we wait.\n\nNow we go."),
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "Dear [name], at [address].", "Dear [name]."),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Thanks.\nP.S. See you.", "Thanks. See you."),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, "Hi.\nP.P.S more", "Hi.\nP.S. more"),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "* one\n* two", "* one\n* two\n- three"),
    ("detectable_format:constrained_response", {}, "My answer is maybe.", "Perhaps."),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "*one* and *two*", "*one* and **"),
    ("detectable_format:multiple_sections", {"section_spliter": "Section", "num_sections": 2},
     "Section 1\nA\nSection 2\nB", "Section 1\nA"),
    ("detectable_format:json_format", {}, '```json\n{"a": 1}\n```', "{a: 1}"),
    ("detectable_format:title", {}, "<<A Poem>>\nRoses.", "<< >>\nRoses."),
    ("combination:two_responses", {}, "Yes.\n******\nNo.", "Yes.\n******\nYes."),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Name a fruit."},
     "Name a fruit. Apple.", "Apple. Name a fruit."),
    ("startend:end_checker", {"end_phrase": "Any other questions?"},
     "Done. Any other questions?", "Any other questions? Done."),
    ("startend:quotation", {}, '"Quoted."', '"Half quoted.'),
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": "at least"},
     "NASA and ESA agree.", "NASA and Esa agree."),
    ("change_case:english_capital", {}, "ALL CAPS, 2 TIMES.", "ALL CAPS but one."),
    ("change_case:english_lowercase", {}, "all lower, 2 times.", "all lower but One."),
    ("punctuation:no_comma", {}, "No commas here.", "One, two."),
]  # fmt: skip


@pytest.mark.parametrize(("instruction", "kwargs", "follows", "breaks"), CASES, ids=[c[0] for c in CASES])
def test_each_instruction_tells_a_followed_one_from_a_broken_one(
    instruction: str, kwargs: dict[str, Any], follows: str, breaks: str
):
    item = IFEvalItem(key=1, prompt="p", instruction_id_list=[instruction], kwargs=[kwargs])
    assert item.followed(follows) == [True]
    assert item.followed(breaks) == [False]


def test_every_instruction_has_a_case():
    assert {c[0] for c in CASES} == set(INSTRUCTIONS)


def test_several_instructions_are_graded_in_order():
    item = IFEvalItem(
        key="k",
        prompt="Write in lowercase, without commas, in at least 3 words.",
        instruction_id_list=[
            "change_case:english_lowercase",
            "punctuation:no_comma",
            "length_constraints:number_words",
        ],
        kwargs=[{}, {}, {"num_words": 3, "relation": "at least"}],
    )
    assert item.followed("three small words") == [True, True, True]
    assert item.followed("Three, words") == [False, False, False]


def test_the_public_files_format_loads(tmp_path: Path):
    """The public IFEval JSONL writes every argument, unused ones as null."""
    row = {"key": 1000, "prompt": "Write a haiku. End with 'Is there anything else?'",
           "instruction_id_list": ["startend:end_checker"],
           "kwargs": [{"end_phrase": "Is there anything else?", "num_words": None, "relation": None}]}  # fmt: skip
    path = tmp_path / "ifeval.jsonl"
    path.write_text(json.dumps(row) + "\n\n")
    (item,) = load_ifeval(path)
    assert item.followed("Leaves fall. Is there anything else?") == [True]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"instruction_id_list": ["language:response_language"], "kwargs": [{"language": "fr"}]},
         "unsupported instructions ['language:response_language']"),
        ({"instruction_id_list": ["punctuation:no_comma"], "kwargs": []}, "1 instructions but 0 kwargs"),
        ({"instruction_id_list": ["keywords:existence"], "kwargs": [{"keyword": ["x"]}]}, "keywords:existence"),
        ({"instruction_id_list": [], "kwargs": []}, "instruction_id_list"),
    ],
)  # fmt: skip
def test_a_bad_line_is_an_error_naming_the_file_line_and_problem(tmp_path: Path, row: dict[str, Any], message: str):
    path = tmp_path / "bad.jsonl"
    good = {"key": 1, "prompt": "p", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}
    path.write_text(json.dumps(good) + "\n" + json.dumps({"key": 2, "prompt": "p", **row}) + "\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: not an IFEval item") as caught:
        load_ifeval(path)
    assert message in str(caught.value)


def test_an_unknown_relation_is_refused_when_loaded():
    with pytest.raises(ValueError, match="relation must be 'less than' or 'at least', not 'about'"):
        IFEvalItem(key=1, prompt="p", instruction_id_list=["length_constraints:number_words"],
                   kwargs=[{"num_words": 3, "relation": "about"}])  # fmt: skip


def test_the_bundled_sample_loads_and_is_gradable():
    items = load_ifeval(IFEVAL_SAMPLE)
    assert len(items) == 16 and len({i.key for i in items}) == 16
    assert all(isinstance(followed, bool) for item in items for followed in item.followed("a plain answer"))

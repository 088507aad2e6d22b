"""IFEval-style instruction following: each instruction is a programmatic check, so grading needs no
model and is exact (Zhou et al., 2023, "Instruction-Following Evaluation for Large Language Models").

An eval-set line is ``{"key", "prompt", "instruction_id_list", "kwargs"}`` exactly as the public
IFEval files write it; ``kwargs`` holds one argument object per instruction. The checks follow the
reference implementation's "strict" reading; an instruction we do not implement is an error at load
time, naming it, never a silent pass.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from shared.evaluation import read_jsonl
from shared.schemas import Schema

IFEVAL_SAMPLE = Path(__file__).parent / "ifeval_sample.jsonl"
Check = Callable[..., bool]
RELATIONS = frozenset({"relation", "let_relation", "capital_relation"})
CONSTRAINED_RESPONSES = ("My answer is yes.", "My answer is no.", "My answer is maybe.")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


def _compare(count: int, relation: str, target: int) -> bool:
    if relation == "less than":
        return count < target
    if relation == "at least":
        return count >= target
    raise ValueError(f"relation must be 'less than' or 'at least', not {relation!r}")


def _words(text: str) -> list[str]:
    return re.findall(r"\b\w+\b", text)


def _sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def _paragraphs(text: str) -> list[str]:
    """IFEval's paragraphs are separated by the markdown divider ``***``; an empty one fails the count."""
    return [p.strip() for p in re.split(r"\s?\*\*\*\s?", text)]


def keyword_existence(text: str, keywords: list[str]) -> bool:
    return all(re.search(re.escape(k), text, re.IGNORECASE) for k in keywords)


def keyword_frequency(text: str, keyword: str, frequency: int, relation: str) -> bool:
    return _compare(len(re.findall(re.escape(keyword), text, re.IGNORECASE)), relation, frequency)


def forbidden_words(text: str, forbidden_words: list[str]) -> bool:
    return not any(re.search(rf"\b{re.escape(w)}\b", text, re.IGNORECASE) for w in forbidden_words)


def letter_frequency(text: str, letter: str, let_frequency: int, let_relation: str) -> bool:
    return _compare(text.lower().count(letter.lower()), let_relation, let_frequency)


def number_sentences(text: str, num_sentences: int, relation: str) -> bool:
    return _compare(len(_sentences(text)), relation, num_sentences)


def number_paragraphs(text: str, num_paragraphs: int) -> bool:
    paragraphs = _paragraphs(text)
    return all(paragraphs) and len(paragraphs) == num_paragraphs


def number_words(text: str, num_words: int, relation: str) -> bool:
    return _compare(len(_words(text)), relation, num_words)


def nth_paragraph_first_word(text: str, num_paragraphs: int, nth_paragraph: int, first_word: str) -> bool:
    """Paragraphs here are separated by blank lines (the reference's reading for this one instruction)."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    if len(paragraphs) != num_paragraphs or not 1 <= nth_paragraph <= len(paragraphs):
        return False
    first = _words(paragraphs[nth_paragraph - 1])
    return bool(first) and first[0].lower() == first_word.lower()


def number_placeholders(text: str, num_placeholders: int) -> bool:
    return len(re.findall(r"\[.*?\]", text)) >= num_placeholders


def postscript(text: str, postscript_marker: str) -> bool:
    marker = postscript_marker.strip()
    pattern = r"\s*p\.\s?p\.?\s?s.*$" if marker.lower() == "p.p.s" else rf"\s*{re.escape(marker.lower())}.*$"
    return re.search(pattern, text.lower(), re.MULTILINE) is not None


def number_bullet_lists(text: str, num_bullets: int) -> bool:
    return len(re.findall(r"^\s*[*-][^*-].*$", text, re.MULTILINE)) == num_bullets


def constrained_response(text: str) -> bool:
    return any(option in text.strip() for option in CONSTRAINED_RESPONSES)


def number_highlighted_sections(text: str, num_highlights: int) -> bool:
    highlights = re.findall(r"\*[^\n*]*\*", text) + re.findall(r"\*\*[^\n*]*\*\*", text)
    return sum(1 for h in highlights if h.strip("*").strip()) >= num_highlights


def multiple_sections(text: str, section_spliter: str, num_sections: int) -> bool:
    sections = re.split(rf"\s?{re.escape(section_spliter)}\s?\d+\s?", text)
    return len(sections) - 1 >= num_sections


def json_format(text: str) -> bool:
    body = text.strip().removeprefix("```json").removeprefix("```Json").removeprefix("```JSON")
    body = body.removeprefix("```").removesuffix("```").strip()
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def title(text: str) -> bool:
    return any(t.strip() for t in re.findall(r"<<([^\n]+?)>>", text))


def two_responses(text: str) -> bool:
    parts = [p.strip() for p in text.split("******")]
    return len(parts) == 2 and all(parts) and parts[0] != parts[1]


def repeat_prompt(text: str, prompt_to_repeat: str) -> bool:
    return text.strip().lower().startswith(prompt_to_repeat.strip().lower())


def end_checker(text: str, end_phrase: str) -> bool:
    return text.strip().strip('"').lower().endswith(end_phrase.strip().lower())


def quotation(text: str) -> bool:
    stripped = text.strip()
    return len(stripped) > 1 and stripped[0] == '"' and stripped[-1] == '"'


def capital_word_frequency(text: str, capital_frequency: int, capital_relation: str) -> bool:
    return _compare(sum(1 for w in _words(text) if w.isupper()), capital_relation, capital_frequency)


def english_capital(text: str) -> bool:
    return text.isupper()


def english_lowercase(text: str) -> bool:
    return text.islower()


def no_comma(text: str) -> bool:
    return "," not in text


INSTRUCTIONS: dict[str, Check] = {
    "keywords:existence": keyword_existence,
    "keywords:frequency": keyword_frequency,
    "keywords:forbidden_words": forbidden_words,
    "keywords:letter_frequency": letter_frequency,
    "length_constraints:number_sentences": number_sentences,
    "length_constraints:number_paragraphs": number_paragraphs,
    "length_constraints:number_words": number_words,
    "length_constraints:nth_paragraph_first_word": nth_paragraph_first_word,
    "detectable_content:number_placeholders": number_placeholders,
    "detectable_content:postscript": postscript,
    "detectable_format:number_bullet_lists": number_bullet_lists,
    "detectable_format:constrained_response": constrained_response,
    "detectable_format:number_highlighted_sections": number_highlighted_sections,
    "detectable_format:multiple_sections": multiple_sections,
    "detectable_format:json_format": json_format,
    "detectable_format:title": title,
    "combination:two_responses": two_responses,
    "combination:repeat_prompt": repeat_prompt,
    "startend:end_checker": end_checker,
    "startend:quotation": quotation,
    "change_case:capital_word_frequency": capital_word_frequency,
    "change_case:english_capital": english_capital,
    "change_case:english_lowercase": english_lowercase,
    "punctuation:no_comma": no_comma,
}
"""IFEval's instruction ids -> checks. Not here: ``language:response_language``, which needs a
language detector model."""


class IFEvalItem(Schema):
    """One IFEval line; the arguments are checked against each instruction's at load time."""

    key: int | str
    prompt: str = Field(min_length=1)
    instruction_id_list: list[str] = Field(min_length=1)
    kwargs: list[dict[str, Any]]

    @model_validator(mode="after")
    def _known_and_matched(self) -> IFEvalItem:
        if len(self.kwargs) != len(self.instruction_id_list):
            raise ValueError(
                f"{len(self.instruction_id_list)} instructions but {len(self.kwargs)} kwargs objects: one each"
            )
        unknown = [i for i in self.instruction_id_list if i not in INSTRUCTIONS]
        if unknown:
            raise ValueError(f"unsupported instructions {unknown}; supported: {', '.join(sorted(INSTRUCTIONS))}")
        for name, kwargs in zip(self.instruction_id_list, self.kwargs, strict=True):
            try:
                inspect.signature(INSTRUCTIONS[name]).bind("", **_arguments(kwargs))
            except TypeError as exc:
                raise ValueError(f"{name}: {exc}") from exc
            for key in RELATIONS & kwargs.keys():
                if kwargs[key] is not None and kwargs[key] not in ("less than", "at least"):
                    raise ValueError(f"{name}: {key} must be 'less than' or 'at least', not {kwargs[key]!r}")
        return self

    def followed(self, response: str) -> list[bool]:
        """Whether ``response`` follows each instruction, in order (IFEval's strict reading)."""
        return [
            INSTRUCTIONS[name](response, **_arguments(kwargs))
            for name, kwargs in zip(self.instruction_id_list, self.kwargs, strict=True)
        ]


def _arguments(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The public files write every argument of every instruction, unused ones as null: drop those."""
    return {k: v for k, v in kwargs.items() if v is not None}


def load_ifeval(path: str | Path) -> list[IFEvalItem]:
    """An IFEval JSONL file; a malformed line is an error naming the file and line."""
    return read_jsonl(path, IFEvalItem, "an IFEval item")

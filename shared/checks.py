"""Programmatic criteria, graded exactly without a model, registered by check type.

Shared because two services apply them: the judge grades answers, the producer checks that a
proposed reference obeys the constraints its own task states. A new check is a schema model in
``shared.schemas`` (a ``type`` literal) plus a function registered here under that type.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from shared.schemas import Criterion, JsonValidCheck, LanguageCheck, MentionCheck, RegexCheck, Verdict, WordCountCheck

CheckFn = Callable[[Any, str], tuple[bool, str]]
_REGISTRY: dict[str, CheckFn] = {}


def register_check(*types: str) -> Callable[[CheckFn], CheckFn]:
    def decorate(fn: CheckFn) -> CheckFn:
        for t in types:
            _REGISTRY[t] = fn
        return fn

    return decorate


def registered_checks() -> list[str]:
    return sorted(_REGISTRY)


@register_check("word_count")
def _word_count(check: WordCountCheck, answer: str) -> tuple[bool, str]:
    words = len(answer.split())
    upper = "∞" if check.max_words is None else str(check.max_words)
    ok = words >= check.min_words and (check.max_words is None or words <= check.max_words)
    return ok, f"{words} words; required {check.min_words}-{upper}"


@register_check("must_mention", "must_not_mention")
def _mentions(check: MentionCheck, answer: str) -> tuple[bool, str]:
    flags = 0 if check.case_sensitive else re.IGNORECASE
    found = [t for t in check.terms if re.search(rf"\b{re.escape(t)}\b", answer, flags)]
    hit = len(found) == len(check.terms) if check.match == "all" else bool(found)
    ok = hit if check.type == "must_mention" else not found
    return ok, f"mentions {found or 'none'} of {check.terms}"


@register_check("regex")
def _regex(check: RegexCheck, answer: str) -> tuple[bool, str]:
    matched = re.search(check.pattern, answer, re.IGNORECASE if check.ignore_case else 0) is not None
    return matched == check.must_match, f"{'matches' if matched else 'does not match'} /{check.pattern}/"


_FENCED = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


@register_check("json_valid")
def _json_valid(check: JsonValidCheck, answer: str) -> tuple[bool, str]:
    fenced = _FENCED.search(answer)
    try:
        value = json.loads(fenced.group(1) if fenced else answer)
    except json.JSONDecodeError as exc:
        return False, f"not JSON: {exc.msg} at {exc.pos}"
    if not isinstance(value, dict):
        return False, f"JSON {type(value).__name__}, not an object"
    missing = [k for k in check.required_keys if k not in value]
    return not missing, f"missing keys {missing}" if missing else "a JSON object with the required keys"


@register_check("language")
def _language(check: LanguageCheck, answer: str) -> tuple[bool, str]:
    from langdetect import DetectorFactory, LangDetectException, detect

    DetectorFactory.seed = 0  # langdetect samples; a fixed seed makes the verdict reproducible
    try:
        found = detect(answer)
    except LangDetectException:
        return False, "no language detected"
    return found.split("-")[0] == check.language, f"written in {found}; required {check.language}"


def grade_programmatic(criterion: Criterion, answer: str) -> Verdict:
    check = criterion.check
    if check is None:
        raise ValueError(f"criterion {criterion.name!r} has no programmatic check")
    ok, reason = _REGISTRY[check.type](check, answer)
    met = ok if criterion.points is not None else None
    return Verdict(
        criterion=criterion.name, rating=2 if ok else 0, reason=reason, met=met, backend=f"programmatic:{check.type}"
    )

"""Programmatic criteria, graded exactly without a model.

Shared because two services apply them: the judge grades answers, the producer checks that a
proposed reference obeys the constraints its own task states.
"""

from __future__ import annotations

import re

from shared.schemas import Criterion, MentionCheck, Verdict, WordCountCheck


def _word_count(check: WordCountCheck, answer: str) -> tuple[bool, str]:
    words = len(answer.split())
    upper = "∞" if check.max_words is None else str(check.max_words)
    ok = words >= check.min_words and (check.max_words is None or words <= check.max_words)
    return ok, f"{words} words; required {check.min_words}-{upper}"


def _mentions(check: MentionCheck, answer: str) -> tuple[bool, str]:
    flags = 0 if check.case_sensitive else re.IGNORECASE
    found = [t for t in check.terms if re.search(rf"\b{re.escape(t)}\b", answer, flags)]
    hit = len(found) == len(check.terms) if check.match == "all" else bool(found)
    ok = hit if check.type == "must_mention" else not found
    return ok, f"mentions {found or 'none'} of {check.terms}"


def grade_programmatic(criterion: Criterion, answer: str) -> Verdict:
    check = criterion.check
    if isinstance(check, WordCountCheck):
        ok, reason = _word_count(check, answer)
    elif isinstance(check, MentionCheck):
        ok, reason = _mentions(check, answer)
    else:
        raise ValueError(f"criterion {criterion.name!r} has no programmatic check")
    return Verdict(criterion=criterion.name, rating=2 if ok else 0, reason=reason)

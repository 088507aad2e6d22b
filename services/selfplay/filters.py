"""Rejection rules for documents, proposed tasks and scored groups; each returns a reason or None.

A reason is a short stable name: the producer counts rejections by it, and the gateway and the
metrics endpoint show those counts, so a user sees *why* synthesis is slow or collapsing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from shared.config import FilterConfig
from shared.diversity import words

DRAW_ENDING_REASONS = frozenset({
    "doc_too_short", "doc_boilerplate", "proposal_exhausted", "mixed_policy_version", "untagged_policy_version",
    "rubric_failed", "too_few_valid_answers", "no_score_variance", "service_error", "foreign_policy",
})  # fmt: skip
"""Reasons that end a draw; the others reject one proposal attempt, and the proposer tries again."""
_STOP = frozenset((
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "in", "is", "it", "of", "on", "or",
    "that", "the", "this", "to", "was", "were", "with",
))  # fmt: skip
_REFERS = re.compile(
    r"\b(?:(?:according to|in|from|based on|per|as (?:stated|described|mentioned|shown) in|using) "
    r"(?:the|this|that) (?:given |provided |above |following )?"
    r"(?:document|text|passage|article|excerpt|paragraph|reading|source text)"
    r"|the (?:author|writer) of (?:the|this) (?:document|text|passage|article)"
    r"|(?:the|this) (?:given|provided|above) (?:document|text|passage|article|excerpt))\b",
    re.IGNORECASE,
)
_BOILERPLATE = re.compile(
    r"cookie|privacy policy|terms of (?:use|service)|all rights reserved|javascript|sign in|log ?in"
    r"|subscribe|click here|skip to (?:main )?content|newsletter|copyright ©",
    re.IGNORECASE,
)


def shingles(text: str, n: int = 3) -> set[tuple[str, ...]]:
    """Word n-grams; a text shorter than n words is its content words, so short texts still compare."""
    tokens = words(text)
    if len(tokens) < n:
        return {(t,) for t in tokens if t not in _STOP}
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def document_rejection(text: str, word_count: int, min_words: int, cfg: FilterConfig) -> str | None:
    if word_count < min_words:
        return "doc_too_short"
    if cfg.boilerplate and is_boilerplate(text):
        return "doc_boilerplate"
    return None


def is_boilerplate(text: str) -> bool:
    """Gopher-style quality rules (Rae et al., 2021), kept to the ones that need no model."""
    tokens = text.split()
    if not tokens:
        return True
    alpha = sum(any(c.isalpha() for c in t) for t in tokens) / len(tokens)
    mean_len = sum(map(len, tokens)) / len(tokens)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    dup_lines = 1 - len(set(lines)) / len(lines) if lines else 0.0
    distinct = len({t.lower() for t in tokens}) / len(tokens)
    hits = len(_BOILERPLATE.findall(text))
    return (
        alpha < 0.8
        or not 3 <= mean_len <= 10
        or dup_lines > 0.3
        or (len(tokens) >= 100 and distinct < 0.2)
        or hits >= max(3, len(tokens) // 100)
    )


def task_rejection(task: str, reference: str, document: str, cfg: FilterConfig) -> str | None:
    count = len(task.split())
    if count < cfg.min_task_words:
        return "task_empty"
    if count > cfg.max_task_words:
        return "task_too_long"
    if _REFERS.search(task):
        return "task_refers_to_document"
    if leaks(task, reference, cfg.max_reference_overlap):
        return "task_leaks_reference"
    if count >= 6 and overlap(task, document) > cfg.max_document_overlap:
        return "task_copies_document"
    return None


def overlap(text: str, source: str) -> float:
    """The share of ``text``'s word trigrams that ``source`` contains."""
    mine = shingles(text)
    return len(mine & shingles(source)) / len(mine) if mine else 0.0


def leaks(task: str, reference: str, max_overlap: float) -> bool:
    """The share of the reference's trigrams that the task already contains exceeds ``max_overlap``."""
    ref = shingles(reference)
    if not ref:
        return False
    if all(len(s) == 3 for s in ref):
        return overlap(reference, task) > max_overlap
    return len(ref & {(t,) for t in words(task)}) / len(ref) > max_overlap


def jaccard(a: set[tuple[str, ...]], b: set[tuple[str, ...]]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def near_duplicate(task: str, recent: Iterable[str], threshold: float) -> bool:
    """Whether ``task`` is at least ``threshold`` word-trigram Jaccard-similar to any recent task."""
    mine = shingles(task)
    return any(jaccard(mine, shingles(other)) >= threshold for other in recent)


def group_rejection(rewards: Sequence[float | None], cfg: FilterConfig) -> str | None:
    valid = [r for r in rewards if r is not None]
    if len(valid) < cfg.min_valid_answers:
        return "too_few_valid_answers"
    if max(valid) - min(valid) <= cfg.min_score_range + 1e-9:
        return "no_score_variance"
    return None

"""Seeded draws over a corpus: without replacement per epoch, reproducible, resumable, shared.

Draw ``g`` of a run is a pure function of the seed: epoch ``g // U`` and the ``g % U``-th unit of
that epoch's seeded permutation of the ``U`` units (documents, or chunks of long ones). The run's
next ``g`` lives in Redis (``HINCRBY``), so any number of producer replicas share one sequence, and
a stopped run that resumes draws exactly the documents it would have drawn unstopped.
"""

from __future__ import annotations

import random
import re
from bisect import bisect_right
from dataclasses import dataclass
from itertools import accumulate

import numpy as np

from shared.corpus import CorpusFile, load_index
from shared.schemas import Document, DocumentRef

_WORD = re.compile(r"\S+")
_GOLDEN = 0.6180339887498949


@dataclass(frozen=True)
class Drawn:
    document: Document
    ref: DocumentRef
    words: int


def chunk_text(text: str, chunk: int, chunks: int) -> tuple[str, int]:
    """The ``chunk``-th of ``chunks`` even word spans of ``text``, whitespace inside kept."""
    spans = [m.span() for m in _WORD.finditer(text)]
    if chunks <= 1:
        return text, len(spans)
    lo, hi = chunk * len(spans) // chunks, (chunk + 1) * len(spans) // chunks
    if lo >= hi:
        return "", 0
    return text[spans[lo][0] : spans[hi - 1][1]], hi - lo


def truncate_text(text: str, max_words: int) -> tuple[str, int]:
    spans = [m.span() for m in _WORD.finditer(text)]
    if len(spans) <= max_words:
        return text, len(spans)
    return text[: spans[max_words - 1][1]], max_words


class CorpusSampler:
    """Maps a draw index to a document chunk; holds one epoch's permutation (8 bytes a unit)."""

    def __init__(self, corpus: CorpusFile, seed: int, max_words: int, chunk: bool = True) -> None:
        self.corpus, self.seed, self.max_words, self.chunk = corpus, seed, max_words, chunk
        self.index = load_index(corpus)
        self.unit_doc, self.unit_chunk = self.index.units(max_words, chunk)
        self._epoch, self._order = -1, np.empty(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.unit_doc)

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            self._order = np.random.default_rng([self.seed, epoch]).permutation(len(self))
            self._epoch = epoch
        return self._order

    def draw(self, g: int) -> Drawn:
        epoch, position = divmod(g, len(self))
        unit = int(self._permutation(epoch)[position])
        doc_index, chunk = int(self.unit_doc[unit]), int(self.unit_chunk[unit])
        entry = self.index.docs[doc_index]
        doc = self.corpus.read(int(entry["locator"]))
        chunks = max(1, -(-int(entry["words"]) // self.max_words)) if self.chunk else 1
        if self.chunk:
            text, words = chunk_text(doc.text, chunk, chunks)
        else:
            text, words = truncate_text(doc.text, self.max_words)
        ref = DocumentRef(document_id=doc.id, chunk=chunk, chunks=chunks, draw=g, epoch=epoch)
        chunk_id = doc.id if chunks == 1 else f"{doc.id}#{chunk}"
        return Drawn(Document(id=chunk_id, text=text or " ", source=doc.source), ref, words)


class TaskMix:
    """Which task type draw ``g`` gets: proportional to the weights, evenly interleaved, seeded.

    A golden-ratio sequence rather than independent random picks, so even a handful of draws
    covers every type in proportion (three equal types appear within any three draws' reach).
    """

    def __init__(self, weights: dict[str, float], seed: int) -> None:
        self.names = list(weights)
        total = sum(weights.values())
        self._bounds = list(accumulate(w / total for w in weights.values()))
        self._offset = random.Random(f"{seed}:task-mix").random()

    def pick(self, g: int) -> str:
        u = (self._offset + g * _GOLDEN) % 1.0
        return self.names[min(bisect_right(self._bounds, u), len(self.names) - 1)]

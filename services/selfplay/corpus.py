"""Seeded, resumable document sampling that never loads the corpus into memory.

One pass records each line's byte offset (8 bytes a document); every epoch is a seeded
permutation of those offsets, so a run draws each document once per epoch, in an order that the
seed alone fixes, and can resume from ``(epoch, index)``.
"""

from __future__ import annotations

import random
from array import array
from dataclasses import dataclass
from pathlib import Path

from shared.schemas import Document


@dataclass
class Position:
    epoch: int = 0
    index: int = 0


def index_offsets(path: Path) -> array[int]:
    offsets: array[int] = array("q")
    with path.open("rb") as fh:
        offset = 0
        for line in fh:
            if line.strip():
                offsets.append(offset)
            offset += len(line)
    return offsets


def cut_words(text: str, max_words: int) -> str:
    words = text.split()
    return text if len(words) <= max_words else " ".join(words[:max_words])


class CorpusSampler:
    def __init__(self, path: Path, seed: int, min_words: int, max_words: int, position: Position | None = None):
        self.path, self.seed, self.min_words, self.max_words = path, seed, min_words, max_words
        self.offsets = index_offsets(path)
        if not self.offsets:
            raise ValueError(f"corpus {path} holds no documents")
        self.position = position or Position()
        self.skipped_short = 0
        self._order = self._permutation(self.position.epoch)

    def _permutation(self, epoch: int) -> list[int]:
        order = list(range(len(self.offsets)))
        random.Random(f"{self.seed}:{epoch}").shuffle(order)
        return order

    def _read(self, slot: int) -> Document:
        with self.path.open("rb") as fh:
            fh.seek(self.offsets[slot])
            return Document.model_validate_json(fh.readline())

    def next(self) -> Document:
        """The next document long enough to use, cut to ``max_words``."""
        for _ in range(len(self.offsets) + 1):
            if self.position.index >= len(self._order):
                self.position = Position(self.position.epoch + 1, 0)
                self._order = self._permutation(self.position.epoch)
            doc = self._read(self._order[self.position.index])
            self.position.index += 1
            if len(doc.text.split()) < self.min_words:
                self.skipped_short += 1
                continue
            return doc.model_copy(update={"text": cut_words(doc.text, self.max_words)})
        raise ValueError(f"no document in {self.path} has {self.min_words} words or more")

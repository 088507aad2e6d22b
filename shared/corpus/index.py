"""A corpus's document index (locator and word count per document), built once and memory-mapped.

Twelve bytes a document: a 10-million-document corpus indexes into ~120 MB on disk, of which only
the pages touched are ever resident. The index is cached beside the user's other caches, keyed on
the file's path, size and modification time, so every producer replica reuses one build.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from filelock import FileLock

from shared.corpus.reader import CorpusFile

log = logging.getLogger(__name__)
INDEX_DTYPE = np.dtype([("locator", "<i8"), ("words", "<i4")])
_BATCH = 1 << 16


def cache_dir() -> Path:
    return Path(os.environ.get("POP_CACHE_DIR", Path.home() / ".cache" / "pop")) / "corpus-index"


@dataclass(frozen=True)
class CorpusIndex:
    """Per document: where it is and how many words it has."""

    docs: np.ndarray

    def __len__(self) -> int:
        return len(self.docs)

    def units(self, max_words: int, chunk: bool) -> tuple[np.ndarray, np.ndarray]:
        """(document index, chunk index) of every drawable unit; a long document gives even chunks."""
        if chunk:
            per_doc = np.maximum(1, -(-self.docs["words"].astype(np.int64) // max_words))
        else:
            per_doc = np.ones(len(self.docs), dtype=np.int64)
        doc = np.repeat(np.arange(len(self.docs), dtype=np.int64), per_doc)
        starts = np.repeat(np.cumsum(per_doc) - per_doc, per_doc)
        return doc, (np.arange(len(doc), dtype=np.int64) - starts).astype(np.int32)


def _key(corpus: CorpusFile) -> str:
    stat = corpus.path.stat()
    fields = getattr(corpus, "id_field", ""), getattr(corpus, "text_field", "")
    ident = f"{corpus.path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{fields}"
    return hashlib.sha256(ident.encode()).hexdigest()[:24]


def _build(corpus: CorpusFile, target: Path) -> None:
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    count = 0
    with tmp.open("wb") as fh:
        batch: list[tuple[int, int]] = []
        for item in corpus.scan():
            batch.append(item)
            if len(batch) == _BATCH:
                fh.write(np.array(batch, dtype=INDEX_DTYPE).tobytes())
                count, batch = count + len(batch), []
        if batch:
            fh.write(np.array(batch, dtype=INDEX_DTYPE).tobytes())
            count += len(batch)
    if count == 0:
        tmp.unlink()
        raise ValueError(f"corpus {corpus.path} holds no readable documents")
    # Raw records were streamed out; wrap them as a proper .npy so np.load can memory-map them.
    raw = np.memmap(tmp, dtype=INDEX_DTYPE, mode="r", shape=(count,))
    out = target.with_suffix(".npy.tmp")
    np.lib.format.open_memmap(  # type: ignore[no-untyped-call]
        out, mode="w+", dtype=INDEX_DTYPE, shape=(count,)
    )[:] = raw
    del raw
    tmp.unlink()
    os.replace(out, target)
    log.info("indexed %s: %d documents, %d malformed", corpus.path, count, getattr(corpus, "malformed", 0))


def load_index(corpus: CorpusFile) -> CorpusIndex:
    """The corpus's index, from the cache or built now (once, even with several processes at it)."""
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{_key(corpus)}.npy"
    with FileLock(str(target) + ".lock"):
        if not target.exists():
            _build(corpus, target)
    return CorpusIndex(np.load(target, mmap_mode="r"))

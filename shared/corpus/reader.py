"""Read documents from JSONL or Parquet corpora by position, never loading a whole file.

A corpus is addressed by *locator*: the byte offset of a JSONL line, or the row number of a
Parquet file. ``scan`` walks the file once, yielding each document's locator and word count, so
an index of a multi-gigabyte corpus costs a few bytes a document.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from collections.abc import Iterator
from itertools import accumulate
from pathlib import Path
from typing import Any, Protocol

from shared.schemas import Document

BUILTIN = {"builtin:sample": "sample.jsonl"}


def builtin_corpus_path(name: str = "builtin:sample") -> Path:
    return Path(__file__).parent / BUILTIN[name]


def resolve_corpus(spec: str) -> Path:
    """A ``builtin:`` name or a file path; a missing file is an error naming it."""
    path = builtin_corpus_path(spec) if spec in BUILTIN else Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"corpus not found: {spec}")
    return path


class CorpusFile(Protocol):
    path: Path

    def scan(self) -> Iterator[tuple[int, int]]:
        """(locator, word count) of every readable document, in file order."""
        ...

    def read(self, locator: int) -> Document: ...


class JsonlCorpus:
    def __init__(self, path: Path, id_field: str = "id", text_field: str = "text") -> None:
        self.path, self.id_field, self.text_field = path, id_field, text_field
        self.malformed = 0

    def _text(self, data: Any) -> str:
        """The document's text; one rule for indexing and reading, so an indexed line always reads."""
        text = data[self.text_field]
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"field {self.text_field!r} is not a non-empty string")
        return text

    def _document(self, raw: bytes, locator: int) -> Document:
        data: Any = json.loads(raw)
        doc_id = data.get(self.id_field)
        text = self._text(data)
        return Document(id=str(doc_id if doc_id is not None else f"@{locator}"), text=text, source=str(self.path))

    def scan(self) -> Iterator[tuple[int, int]]:
        with self.path.open("rb") as fh:
            offset = 0
            for line in fh:
                if line.strip():
                    try:
                        yield offset, len(self._text(json.loads(line)).split())
                    except (ValueError, KeyError, TypeError):
                        self.malformed += 1  # counted, skipped: one bad line must not sink a corpus
                offset += len(line)

    def read(self, locator: int) -> Document:
        with self.path.open("rb") as fh:
            fh.seek(locator)
            return self._document(fh.readline(), locator)


class ParquetCorpus:
    """Row-group-wise reads: at most one row group's text column is in memory at a time."""

    def __init__(self, path: Path, id_field: str = "id", text_field: str = "text") -> None:
        import pyarrow.parquet as pq

        self.path, self.id_field, self.text_field = path, id_field, text_field
        self._file = pq.ParquetFile(path)
        meta = self._file.metadata
        names = set(self._file.schema_arrow.names)
        if text_field not in names:
            raise ValueError(f"{path}: no column {text_field!r} (columns: {sorted(names)})")
        self._columns = [c for c in (id_field, text_field) if c in names]
        self._starts = [0, *accumulate(meta.row_group(i).num_rows for i in range(meta.num_row_groups))]
        self._cached: tuple[int, dict[str, list[Any]]] | None = None
        self.malformed = 0

    def _group(self, index: int) -> dict[str, list[Any]]:
        if self._cached is None or self._cached[0] != index:
            table = self._file.read_row_group(index, columns=self._columns)
            self._cached = (index, table.to_pydict())
        return self._cached[1]

    def scan(self) -> Iterator[tuple[int, int]]:
        for index in range(len(self._starts) - 1):
            texts = self._file.read_row_group(index, columns=[self.text_field]).column(0).to_pylist()
            for row, text in enumerate(texts):
                if isinstance(text, str) and text.strip():
                    yield self._starts[index] + row, len(text.split())
                else:
                    self.malformed += 1

    def read(self, locator: int) -> Document:
        index = bisect_right(self._starts, locator) - 1
        columns = self._group(index)
        row = locator - self._starts[index]
        doc_id = columns[self.id_field][row] if self.id_field in columns else None
        text = columns[self.text_field][row]
        return Document(id=str(doc_id if doc_id is not None else f"@{locator}"), text=text, source=str(self.path))


def open_corpus(spec: str, id_field: str = "id", text_field: str = "text") -> CorpusFile:
    path = resolve_corpus(spec)
    if path.suffix == ".parquet":
        return ParquetCorpus(path, id_field, text_field)
    return JsonlCorpus(path, id_field, text_field)


def iter_documents(path: Path) -> Iterator[Document]:
    """Yield each valid document in order; malformed lines name their line number."""
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield Document.model_validate(json.loads(line))
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{path}:{lineno}: not a document: {exc}") from exc

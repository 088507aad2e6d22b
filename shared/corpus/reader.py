"""Stream documents from JSONL without loading the file: corpora can be many gigabytes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

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


def iter_documents(path: Path) -> Iterator[Document]:
    """Yield each valid document; malformed lines name their line number."""
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield Document.model_validate(json.loads(line))
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{path}:{lineno}: not a document: {exc}") from exc

"""Document sampling: seeded order, no repeats within an epoch, short documents skipped, long ones cut."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.selfplay.corpus import CorpusSampler, Position
from shared.corpus import builtin_corpus_path, iter_documents, resolve_corpus


def write_corpus(path: Path, lengths: list[int]) -> Path:
    with path.open("w") as fh:
        for i, n in enumerate(lengths):
            fh.write(json.dumps({"id": f"d{i}", "text": " ".join(["word"] * n), "source": "t"}) + "\n")
    return path


def test_same_seed_same_order_and_each_document_once_per_epoch(tmp_path: Path):
    corpus = write_corpus(tmp_path / "c.jsonl", [60] * 10)
    a = CorpusSampler(corpus, seed=7, min_words=50, max_words=100)
    b = CorpusSampler(corpus, seed=7, min_words=50, max_words=100)
    first = [a.next().id for _ in range(10)]
    assert first == [b.next().id for _ in range(10)]
    assert sorted(first) == sorted(f"d{i}" for i in range(10))
    assert [CorpusSampler(corpus, seed=8, min_words=50, max_words=100).next().id for _ in range(10)] != first
    assert a.next().id in first and a.position.epoch == 1  # a new epoch, a new permutation


def test_resume_from_position_continues_the_same_sequence(tmp_path: Path):
    corpus = write_corpus(tmp_path / "c.jsonl", [60] * 12)
    full = CorpusSampler(corpus, seed=1, min_words=50, max_words=100)
    drawn = [full.next().id for _ in range(15)]
    part = CorpusSampler(corpus, seed=1, min_words=50, max_words=100)
    head = [part.next().id for _ in range(5)]
    resumed = CorpusSampler(corpus, seed=1, min_words=50, max_words=100, position=Position(**vars(part.position)))
    assert head + [resumed.next().id for _ in range(10)] == drawn


def test_short_documents_skipped_long_ones_cut(tmp_path: Path):
    corpus = write_corpus(tmp_path / "c.jsonl", [10, 2000, 20])
    sampler = CorpusSampler(corpus, seed=0, min_words=50, max_words=1024)
    doc = sampler.next()
    assert doc.id == "d1" and len(doc.text.split()) == 1024
    assert sampler.next().id == "d1"
    assert sampler.skipped_short >= 2


def test_corpus_with_no_usable_document_is_an_error(tmp_path: Path):
    with pytest.raises(ValueError, match="no document"):
        CorpusSampler(write_corpus(tmp_path / "c.jsonl", [5, 5]), seed=0, min_words=50, max_words=100).next()
    with pytest.raises(FileNotFoundError, match=r"missing\.jsonl"):
        resolve_corpus(str(tmp_path / "missing.jsonl"))


def test_malformed_line_names_its_line(tmp_path: Path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "x"}\n{"id": 1}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        list(iter_documents(bad))


def test_bundled_corpus_covers_the_three_task_types():
    docs = list(iter_documents(builtin_corpus_path()))
    assert len(docs) >= 300
    assert len({d.id for d in docs}) == len(docs)
    sources = {d.source for d in docs}
    assert {"pop-sample/health", "pop-sample/books", "pop-sample/web"} <= sources
    assert all(len(d.text.split()) >= 50 for d in docs)

"""Corpus draws: seeded, once per epoch, chunked or cut, JSONL and Parquet, and the bundled sample."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from services.selfplay.corpus import CorpusSampler, TaskMix, chunk_text
from shared.corpus import JsonlCorpus, ParquetCorpus, builtin_corpus_path, iter_documents, open_corpus, resolve_corpus


def write_corpus(path: Path, lengths: list[int]) -> Path:
    with path.open("w") as fh:
        for i, n in enumerate(lengths):
            fh.write(json.dumps({"id": f"d{i}", "text": " ".join(f"w{i}x{j}" for j in range(n))}) + "\n")
    return path


def sampler(path: Path, seed: int = 0, max_words: int = 100, chunk: bool = True) -> CorpusSampler:
    return CorpusSampler(JsonlCorpus(path), seed, max_words, chunk)


def test_same_seed_same_draws_and_each_document_once_per_epoch(tmp_path: Path):
    corpus = write_corpus(tmp_path / "c.jsonl", [60] * 10)
    first = [sampler(corpus, 7).draw(g).document.id for g in range(10)]
    assert first == [sampler(corpus, 7).draw(g).document.id for g in range(10)]
    assert sorted(first) == sorted(f"d{i}" for i in range(10))  # without replacement
    second_epoch = [sampler(corpus, 7).draw(g) for g in range(10, 20)]
    assert {d.ref.epoch for d in second_epoch} == {1}
    assert sorted(d.document.id for d in second_epoch) == sorted(first)
    assert [d.document.id for d in second_epoch] != first  # a fresh permutation each epoch
    assert [sampler(corpus, 8).draw(g).document.id for g in range(10)] != first


def test_a_long_document_is_drawn_as_even_chunks_each_once(tmp_path: Path):
    corpus = write_corpus(tmp_path / "c.jsonl", [250, 60])
    s = sampler(corpus, max_words=100)
    assert len(s) == 4  # 250 words -> 3 chunks of 83-84, plus the short document
    drawn = [s.draw(g) for g in range(4)]
    chunks = sorted((d.ref.document_id, d.ref.chunk, d.ref.chunks, d.words) for d in drawn)
    assert chunks == [("d0", 0, 3, 83), ("d0", 1, 3, 83), ("d0", 2, 3, 84), ("d1", 0, 1, 60)]
    text = " ".join(d.document.text for d in sorted(drawn, key=lambda d: d.ref.chunk) if d.ref.document_id == "d0")
    assert text.split() == [f"w0x{j}" for j in range(250)]  # the chunks cover the document exactly
    assert {d.document.id for d in drawn} == {"d0#0", "d0#1", "d0#2", "d1"}


def test_truncate_mode_keeps_the_start():
    assert chunk_text("a  b\nc d", 0, 1) == ("a  b\nc d", 4)
    assert chunk_text("a  b\nc d", 1, 2) == ("c d", 2)


def test_truncate_mode_draws_one_unit_per_document(tmp_path: Path):
    corpus = write_corpus(tmp_path / "c.jsonl", [250, 60])
    s = sampler(corpus, max_words=100, chunk=False)
    assert len(s) == 2
    long = next(s.draw(g) for g in range(2) if s.draw(g).ref.document_id == "d0")
    assert long.words == 100 and long.document.text.split()[-1] == "w0x99"


def test_malformed_lines_are_skipped_and_other_fields_ignored(tmp_path: Path):
    path = tmp_path / "c.jsonl"
    path.write_text(
        '{"id": "a", "text": "one two three", "url": "x"}\nnot json\n{"id": "b"}\n\n{"text": "no id here"}\n'
    )
    s = sampler(path)
    assert len(s) == 2
    offset = path.read_bytes().index(b'{"text": "no id')
    assert {s.draw(g).document.id for g in range(2)} == {"a", f"@{offset}"}


def test_custom_fields(tmp_path: Path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"doc_id": 7, "body": "alpha beta"}\n')
    doc = CorpusSampler(open_corpus(str(path), "doc_id", "body"), 0, 100).draw(0).document
    assert (doc.id, doc.text) == ("7", "alpha beta")


def test_parquet_corpus_reads_row_groups_lazily(tmp_path: Path):
    pa, pq = pytest.importorskip("pyarrow"), pytest.importorskip("pyarrow.parquet")
    table = pa.table({"id": [f"p{i}" for i in range(50)], "text": [f"text of {i} " * 5 for i in range(50)]})
    path = tmp_path / "c.parquet"
    pq.write_table(table, path, row_group_size=8)
    corpus = open_corpus(str(path))
    assert isinstance(corpus, ParquetCorpus)
    s = CorpusSampler(corpus, seed=3, max_words=100)
    docs = [s.draw(g).document for g in range(50)]
    assert sorted(d.id for d in docs) == sorted(f"p{i}" for i in range(50))
    assert all(d.text == f"text of {d.id[1:]} " * 5 for d in docs)


def test_missing_corpus_is_named(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match=r"missing\.jsonl"):
        resolve_corpus(str(tmp_path / "missing.jsonl"))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(ValueError, match="no readable documents"):
        sampler(empty)


def test_task_mix_follows_weights_and_covers_every_type_early():
    mix = TaskMix({"a": 1.0, "b": 1.0, "c": 1.0}, seed=5)
    assert {mix.pick(g) for g in range(3)} == {"a", "b", "c"}
    counts = Counter(TaskMix({"a": 3.0, "b": 1.0}, seed=1).pick(g) for g in range(4000))
    assert abs(counts["a"] / 4000 - 0.75) < 0.01
    assert [mix.pick(g) for g in range(20)] == [TaskMix({"a": 1, "b": 1, "c": 1}, seed=5).pick(g) for g in range(20)]


def test_bundled_sample_is_valid_and_varied():
    docs = list(iter_documents(builtin_corpus_path()))
    assert len(docs) >= 300
    assert len({d.source for d in docs}) >= 3

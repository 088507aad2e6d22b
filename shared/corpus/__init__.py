"""Document corpora: the bundled sample, and JSONL or Parquet files of any size, read by position."""

from shared.corpus.index import CorpusIndex, load_index
from shared.corpus.reader import (
    CorpusFile,
    JsonlCorpus,
    ParquetCorpus,
    builtin_corpus_path,
    iter_documents,
    open_corpus,
    resolve_corpus,
)

__all__ = [
    "CorpusFile",
    "CorpusIndex",
    "JsonlCorpus",
    "ParquetCorpus",
    "builtin_corpus_path",
    "iter_documents",
    "load_index",
    "open_corpus",
    "resolve_corpus",
]

"""Document corpora: the bundled sample and any JSONL file of ``{"id", "text", "source"}`` lines."""

from shared.corpus.reader import builtin_corpus_path, iter_documents, resolve_corpus

__all__ = ["builtin_corpus_path", "iter_documents", "resolve_corpus"]

"""A corpus far larger than the memory a producer may use is streamed, not loaded.

The test writes a >= 500 MB JSONL corpus, then, in a fresh process, indexes it and draws from it;
the process's peak resident memory may grow by less than 300 MB over its baseline.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

TARGET_BYTES = 500 * 1024 * 1024
DRAWS = 3000

PROBE = r"""
import json, sys, time
from services.selfplay.corpus import CorpusSampler
from shared.corpus import JsonlCorpus

def kib(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])

base = kib("VmRSS:")
started = time.perf_counter()
sampler = CorpusSampler(JsonlCorpus(__import__("pathlib").Path(sys.argv[1])), seed=11, max_words=1024)
indexed = time.perf_counter() - started
ids = [sampler.draw(g).ref for g in range(int(sys.argv[2]))]
print(json.dumps({
    "growth_mib": (kib("VmHWM:") - base) / 1024, "units": len(sampler), "index_s": indexed,
    "draws": len(ids), "distinct": len({(r.document_id, r.chunk) for r in ids}),
    "chunked": sum(r.chunks > 1 for r in ids),
}))
"""


def write_big_corpus(path: Path) -> int:
    rng = random.Random(0)
    vocab = [f"{rng.choice('bcdfghklmnprstvz')}{rng.choice('aeiou')}{rng.choice('nrstl')}{i}" for i in range(5000)]
    blocks = [" ".join(rng.choices(vocab, k=rng.randint(60, 600))) for _ in range(500)]
    long_block = " ".join(rng.choices(vocab, k=3000))  # chunked into 3 units at 1,024 words
    written, i = 0, 0
    with path.open("w", encoding="utf-8") as fh:
        while written < TARGET_BYTES:
            text = long_block if i % 97 == 0 else blocks[i % len(blocks)]
            line = json.dumps({"id": f"doc-{i}", "text": f"{i} {text}", "source": "synthetic"}) + "\n"
            fh.write(line)
            written, i = written + len(line), i + 1
    return i


@pytest.mark.timeout(600)
def test_a_500_mb_corpus_is_sampled_in_bounded_memory(tmp_path: Path):
    corpus = tmp_path / "big.jsonl"
    docs = write_big_corpus(corpus)
    assert corpus.stat().st_size >= TARGET_BYTES
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(corpus), str(DRAWS)], capture_output=True, text=True, check=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{docs} documents, {corpus.stat().st_size / 2**20:.0f} MiB: {result}")
    assert result["growth_mib"] < 300
    assert result["units"] > docs  # long documents became several chunks
    assert result["distinct"] == DRAWS  # without replacement within the epoch
    assert result["chunked"] > 0

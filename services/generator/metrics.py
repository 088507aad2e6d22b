"""The generator's own metrics, on the global prometheus registry: vLLM serves that one at ``/metrics``
(``vllm.v1.metrics.prometheus.get_prometheus_registry``; with ``PROMETHEUS_MULTIPROC_DIR`` set it
serves a multiprocess collector instead, and these would not appear)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from prometheus_client import Counter, Gauge, Histogram

SWAP_SECONDS = Histogram(
    "pop_generator_swap_seconds",
    "Hot-swap duration (verify, checksum, pause, reload, resume; no drain), by weight mode and outcome.",
    ["mode", "outcome"],
    buckets=(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0),
)
SWAP_PHASE_SECONDS = Histogram(
    "pop_generator_swap_phase_seconds",
    "Where a hot-swap's time goes: verify (path, files, fit to the served model), checksum (full weights: "
    "before the pause; LoRA: the part not hidden behind the load), pause (full weights: in-flight requests "
    "freeze in place, none is drained, so there is no drain phase), reload (full weights) or load (a LoRA "
    "adapter), finish (resume; old adapter dropped).",
    ["mode", "phase"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0),
)
SWAPS = Counter("pop_generator_swaps", "Hot-swap requests, by weight mode and outcome.", ["mode", "outcome"])
POLICY_VERSION = Gauge("pop_generator_policy_version", "Policy version served now (0 = base model).")


def swap_outcome(status: int | None) -> str:
    """``ok``; ``rejected`` (refused before the weights were touched); ``timeout``; ``failed``."""
    if status is None:
        return "ok"
    if status < 500:
        return "rejected"
    return "timeout" if status == 504 else "failed"


def record_swap(mode: str, outcome: str, seconds: float, version: int) -> None:
    SWAPS.labels(mode, outcome).inc()
    SWAP_SECONDS.labels(mode, outcome).observe(seconds)
    POLICY_VERSION.set(version)


@contextlib.contextmanager
def phase(mode: str, name: str) -> Iterator[None]:
    """Time one phase of a swap, failed ones too (a slow failure is where time went as well)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        SWAP_PHASE_SECONDS.labels(mode, name).observe(time.perf_counter() - started)

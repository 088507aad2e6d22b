"""Reading a service's Prometheus ``/metrics`` into plain numbers, for benchmarks that profile a run
with the services' own instrumentation."""

from __future__ import annotations

from collections import defaultdict

import httpx
from prometheus_client.parser import text_string_to_metric_families


def scrape(url: str) -> dict[str, float]:
    """Every sample of ``{url}/metrics`` as ``name{label=value,...}`` (labels sorted) -> value."""
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=30).text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def histogram_sums(samples: dict[str, float], name: str, label: str) -> dict[str, tuple[float, float]]:
    """``label``'s value -> (sum, count) of histogram ``name``, summed over its other labels."""
    totals: defaultdict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for key, value in samples.items():
        metric, _, labels = key.partition("{")
        if metric not in (f"{name}_sum", f"{name}_count"):
            continue
        values = dict(pair.split("=", 1) for pair in labels.rstrip("}").split(",") if pair)
        totals[values.get(label, "")][metric.endswith("_count")] += value
    return {k: (v[0], v[1]) for k, v in totals.items()}


def total(samples: dict[str, float], name: str) -> float:
    """Sum of counter ``name`` over all its labels (vLLM's counters carry model and engine labels)."""
    return sum(v for k, v in samples.items() if k == name or k.startswith(f"{name}{{"))

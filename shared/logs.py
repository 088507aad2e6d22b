"""One log format for every service, so interleaved logs of the local stack stay readable."""

from __future__ import annotations

import logging


def setup_logging(service: str, level: str = "info") -> None:
    logging.basicConfig(
        level=level.upper(),
        format=f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s",
    )
    # Frameworks (vLLM, uvicorn) may reset the root level after this; our own loggers keep theirs.
    for ours in ("services", "shared", "cli"):
        logging.getLogger(ours).setLevel(level.upper())
    # One line per HTTP call drowns the signal; warnings and errors still show.
    for noisy in ("httpx", "httpx2", "httpcore", "openai"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

"""Start a real service as a child process for the tests, and stop it afterwards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cli.stack import free_port, wait_http


@contextmanager
def service_process(
    argv: list[str], env: dict[str, str], ready_url: str, log: Path, timeout_s: float = 600.0
) -> Iterator[None]:
    """Run ``argv`` until the block ends; ready once ``ready_url`` answers 200."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_http(proc, ready_url, timeout_s, log.stem, log)
        yield
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def checkpoint_root(log_dir: Path) -> Path:
    """Where the tiny generator started in ``log_dir`` may load checkpoints from."""
    return log_dir / "checkpoints"


@dataclass(frozen=True)
class Generator:
    """A running generator's two ports: ``url`` for inference (``{url}/v1`` is OpenAI-compatible), ``admin``
    for control (swap, hold, policy)."""

    url: str
    admin: str
    token: str | None = None


@contextmanager
def tiny_generator(log_dir: Path, admin_token: str | None = None) -> Iterator[Generator]:
    """The vLLM generator on the tiny model: a real OpenAI-compatible endpoint that writes noise."""
    port, admin_port = free_port(), free_port()
    env = {
        "POP_GENERATOR_PORT": str(port),
        "POP_GENERATOR_ADMIN_PORT": str(admin_port),
        "POP_GENERATOR_ADMIN_TOKEN": admin_token or "",
        "POP_GENERATOR_MODEL": "pop/tiny",
        "POP_GENERATOR_DTYPE": "float32",
        "POP_GENERATOR_MAX_MODEL_LEN": "4096",
        "POP_GENERATOR_CHECKPOINT_ROOT": str(checkpoint_root(log_dir)),
        "HF_HUB_OFFLINE": "1",
    }
    url, admin = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin_port}"
    # The admin port answers before the inference port does: ready once inference is.
    with service_process([sys.executable, "-m", "services.generator"], env, f"{url}/readyz", log_dir / "generator.log"):
        yield Generator(url, admin, admin_token)


@contextmanager
def builtin_judge(llm_base_url: str, log_dir: Path) -> Iterator[str]:
    port = free_port()
    env = {"POP_JUDGE_PORT": str(port), "POP_JUDGE_LLM_BASE_URL": llm_base_url}
    url = f"http://127.0.0.1:{port}"
    with service_process([sys.executable, "-m", "services.judge"], env, f"{url}/healthz", log_dir / "judge.log"):
        yield url


@contextmanager
def minimal_judge(log_dir: Path, schema_version: str | None = None) -> Iterator[str]:
    port = free_port()
    argv = [sys.executable, "-m", "tests.judge_conformance.minimal_judge", "--port", str(port)]
    if schema_version is not None:
        argv += ["--schema-version", schema_version]
    url = f"http://127.0.0.1:{port}"
    with service_process(argv, {}, f"{url}/healthz", log_dir / f"minimal-judge-{port}.log", timeout_s=60):
        yield url

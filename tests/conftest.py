"""Real dependencies for the tests: Redis (REDIS_URL, else a redis-server started here) and SQL."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.hub import plant_tiny
from tests.processes import Generator, checkpoint_root, minimal_judge, tiny_generator


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--judge-url",
        default=None,
        help="Run tests/judge_conformance against this judge instead of the built-in and minimal ones.",
    )


@pytest.fixture(scope="session")
def tiny_generator_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny-generator")


@pytest.fixture(scope="session")
def tiny_generator_checkpoints(tiny_generator_dir: Path) -> Path:
    """The only folder (besides the models') the tiny generator loads checkpoints from."""
    return checkpoint_root(tiny_generator_dir)


@pytest.fixture(scope="session")
def tiny_generator_ports(tiny_generator_dir: Path) -> Iterator[Generator]:
    """One tiny generator for the session: ``.url`` (inference) and ``.admin`` (control)."""
    with tiny_generator(tiny_generator_dir) as generator:
        yield generator


@pytest.fixture(scope="session")
def tiny_generator_url(tiny_generator_ports: Generator) -> str:
    """Its inference port: the OpenAI routes (``{url}/v1``)."""
    return tiny_generator_ports.url


@pytest.fixture(scope="session")
def tiny_generator_admin(tiny_generator_ports: Generator) -> str:
    """Its admin port: swap, hold, policy."""
    return tiny_generator_ports.admin


@pytest.fixture(scope="session")
def hub_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ``HF_HOME`` whose cache holds the tiny model as the Hub model ``org/tiny`` (planted: no hub)."""
    home = tmp_path_factory.mktemp("hf-home")
    plant_tiny(home)
    return home


@pytest.fixture(scope="session")
def minimal_judge_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with minimal_judge(tmp_path_factory.mktemp("minimal-judge")) as url:
        yield url


@pytest.fixture(scope="session", autouse=True)
def _corpus_index_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Corpus indexes built by the tests (and the services they start) stay out of the user's cache."""
    os.environ["POP_CACHE_DIR"] = str(tmp_path_factory.mktemp("pop-cache"))


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("set REDIS_URL or install redis-server: the tests need a real Redis")
    port = _free_port()
    proc = subprocess.Popen(
        [server, "--port", str(port), "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL
    )
    time.sleep(0.3)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()

"""Which judge the conformance suite grades: ``--judge-url URL``, or else the built-in judge (on the
tiny vLLM model) and the minimal third-party judge, both started here as real processes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.processes import builtin_judge


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "judge_url" in metafunc.fixturenames:
        url = metafunc.config.getoption("--judge-url")
        metafunc.parametrize("judge_target", [url] if url else ["builtin", "minimal"], scope="session")


@pytest.fixture(scope="session")
def builtin_judge_url(tiny_generator_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with builtin_judge(f"{tiny_generator_url}/v1", tmp_path_factory.mktemp("builtin-judge")) as url:
        yield url


@pytest.fixture(scope="session")
def judge_url(judge_target: str, request: pytest.FixtureRequest) -> str:
    if judge_target == "builtin":
        return str(request.getfixturevalue("builtin_judge_url"))
    if judge_target == "minimal":
        return str(request.getfixturevalue("minimal_judge_url"))
    return judge_target

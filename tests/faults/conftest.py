"""The fault suite's stack (a fleet of two generator replicas, its own Redis and PostgreSQL), shared by
its modules, and its table, printed at the end of every pytest session that ran it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.stack import LocalStack, StackOptions
from tests.faults.infra import OwnPostgres, OwnRedis

TOKEN = "pop_faults-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

ROWS: list[dict[str, object]] = []
COLUMNS = ("fault", "appended", "trained", "dropped", "unread", "lost", "duplicated", "recovery_s")


class Stack:
    """The whole stack on the tiny model, on a Redis and a PostgreSQL of its own."""

    def __init__(self, home: Path) -> None:
        (home / "redis").mkdir()
        self.redis = OwnRedis(home / "redis").start()
        self.postgres = OwnPostgres().start()
        options = StackOptions(home=home, model="pop/tiny", generator_dtype="float32", max_model_len=4096,
                               redis_url=self.redis.url, database_url=self.postgres.url, api_token=TOKEN,
                               generators=2)  # fmt: skip
        self.local = LocalStack(options)


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    own = Stack(tmp_path_factory.mktemp("faults"))
    try:
        with own.local:
            yield own
    finally:
        own.redis.kill()
        own.postgres.stop()


def table() -> list[str]:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in ROWS)) for c in COLUMNS}
    lines = [" | ".join(c.ljust(widths[c]) for c in COLUMNS)]
    lines.append("-+-".join("-" * widths[c] for c in COLUMNS))
    lines += [" | ".join(str(r.get(c, "")).ljust(widths[c]) for c in COLUMNS) for r in ROWS]
    return lines


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if ROWS:
        terminalreporter.section("faults: where every appended episode group went")
        for line in table():
            terminalreporter.write_line(line)

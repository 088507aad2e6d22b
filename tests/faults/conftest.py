"""The fault suite's table, printed at the end of every pytest session that ran it."""

from __future__ import annotations

import pytest

ROWS: list[dict[str, object]] = []
COLUMNS = ("fault", "appended", "trained", "dropped", "unread", "lost", "duplicated", "recovery_s")


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

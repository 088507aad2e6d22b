"""HealthBench-format eval sets: the public file's lines load unchanged; bad lines name the problem."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shared.evaluation.healthbench import HEALTHBENCH_SAMPLE, load_healthbench

LINE: dict[str, Any] = {
    "prompt_id": "x1",
    "prompt": [{"role": "user", "content": "My chest hurts."}, {"role": "assistant", "content": "Since when?"},
               {"role": "user", "content": "An hour, and my left arm is numb."}],
    "rubrics": [{"criterion": "Tells the user to call emergency services.", "points": 10, "tags": ["axis:accuracy"]},
                {"criterion": "Suggests waiting until tomorrow.", "points": -8, "tags": []}],
    "example_tags": ["theme:emergency_referrals"],
    "ideal_completions_data": None,
    "canary": "a field the real files carry",
}  # fmt: skip


def write(tmp_path: Path, *lines: dict[str, Any]) -> Path:
    path = tmp_path / "hb.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_a_public_line_loads_and_becomes_a_healthbench_rubric(tmp_path: Path):
    (item,) = load_healthbench(write(tmp_path, LINE))
    assert item.theme == "emergency_referrals" and len(item.prompt) == 3
    rubric = item.rubric()
    assert rubric.format == "healthbench"
    assert [(c.description, c.points) for c in rubric.criteria] == [
        ("Tells the user to call emergency services.", 10),
        ("Suggests waiting until tomorrow.", -8),
    ]


def test_the_bundled_sample_loads():
    items = load_healthbench(HEALTHBENCH_SAMPLE)
    assert len(items) == 6 and len({i.prompt_id for i in items}) == 6
    assert len({i.theme for i in items}) == 6
    assert all(any(c.points and c.points < 0 for c in i.rubric().criteria) for i in items[:4])  # pitfalls too


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rubrics": [{"criterion": "Says hello.", "points": 0}]}, "worth 0 points"),
        ({"rubrics": [{"criterion": "Is rude.", "points": -5}]}, "no item has positive points"),
        ({"prompt": [{"role": "assistant", "content": "Hi"}]}, "must end with a user turn"),
        ({"prompt": [{"role": "doctor", "content": "Hi"}]}, "prompt.0.role"),
        ({"rubrics": []}, "rubrics"),
    ],
)
def test_a_bad_line_is_an_error_naming_the_file_line_and_problem(tmp_path: Path, change: dict[str, Any], message: str):
    path = write(tmp_path, LINE, {**LINE, **change})
    with pytest.raises(ValueError, match=r"hb\.jsonl:2: not a HealthBench item") as caught:
        load_healthbench(path)
    assert message in str(caught.value)

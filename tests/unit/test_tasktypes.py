"""Task types are files: the built-ins load, a user's directory adds or replaces types, bad files are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.selfplay.propose import proposal_schema, propose_messages
from services.selfplay.solve import answer_budget, solve_messages
from shared.config import SelfPlayConfig
from shared.schemas import Document, Task
from shared.tasktypes import TaskTypeError, available, load_task_types

CUSTOM = """
description: Explain a concept to a child.
synthesis_prompt: Write a question a curious child would ask about the document's topic.
answer_prompt: Answer like a patient teacher talking to a ten-year-old.
rubric_guidance: Reward simple words and one correct fact.
"""


def test_builtin_task_types_cover_the_method():
    names = set(available())
    assert {"long_form_qa", "healthcare_qa", "creative_writing", "instruction_following"} <= names
    types = load_task_types(sorted(names))
    assert types["instruction_following"].constraints and not types["long_form_qa"].constraints
    assert all(t.synthesis_prompt and t.answer_prompt for t in types.values())


def test_a_user_adds_a_task_type_with_a_file(tmp_path: Path):
    (tmp_path / "explain_like_im_ten.yaml").write_text(CUSTOM)
    custom = load_task_types(["explain_like_im_ten"], [tmp_path])["explain_like_im_ten"]
    assert custom.answer_prompt.startswith("Answer like a patient teacher")
    task = Task(document_id="d", prompt="Why is the sky blue?")
    assert solve_messages(task, custom)[0].content == custom.answer_prompt
    proposer = propose_messages(Document(id="d", text="Rayleigh scattering"), custom)
    assert proposer[0].content.startswith(custom.synthesis_prompt) and "Rayleigh scattering" in proposer[0].content
    assert "constraints" not in proposal_schema(SelfPlayConfig(), custom)["properties"]


def test_a_user_file_replaces_a_builtin(tmp_path: Path):
    (tmp_path / "long_form_qa.yaml").write_text(CUSTOM)
    assert load_task_types(["long_form_qa"], [tmp_path])["long_form_qa"].description == "Explain a concept to a child."


def test_unknown_names_and_bad_files_are_errors_that_say_which(tmp_path: Path):
    with pytest.raises(TaskTypeError, match=r"unknown task type\(s\) \['poetry_slam'\]; known: .*long_form_qa"):
        load_task_types(["poetry_slam"])
    (tmp_path / "broken.yaml").write_text("description: no prompts at all\n")
    with pytest.raises(TaskTypeError, match=r"(?s)broken\.yaml.*synthesis_prompt"):
        load_task_types(["broken"], [tmp_path])
    (tmp_path / "renamed.yaml").write_text(CUSTOM + "name: other\n")
    with pytest.raises(TaskTypeError, match="differs from the file name"):
        load_task_types(["renamed"], [tmp_path])
    with pytest.raises(TaskTypeError, match="directory not found"):
        load_task_types(["long_form_qa"], [tmp_path / "nope"])


def test_a_run_that_sets_the_answer_budget_overrides_the_types_default():
    creative = load_task_types(["creative_writing"])["creative_writing"]
    assert creative.max_answer_tokens == 256
    assert answer_budget(creative, SelfPlayConfig()) == 256
    assert answer_budget(creative, SelfPlayConfig(max_answer_tokens=24)) == 24
    qa = load_task_types(["long_form_qa"])["long_form_qa"]
    assert answer_budget(qa, SelfPlayConfig()) == SelfPlayConfig().max_answer_tokens

"""Run configs: YAML validated by the same models, errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.config import DPOConfig, GRPOConfig, RunConfig
from shared.settings import GatewaySettings, GeneratorSettings

ROOT = Path(__file__).resolve().parents[2]


def test_demo_config_is_valid():
    config = RunConfig.from_file(ROOT / "configs" / "demo.yaml")
    assert config.model == "pop/smollm2-135m-instruct"
    assert isinstance(config.trainer.algorithm, DPOConfig)
    assert config.judge.extra_criteria[0].programmatic


def test_algorithm_is_a_discriminated_union():
    config = RunConfig.from_yaml("trainer:\n  algorithm: {name: grpo, clip_eps: 0.1}\n")
    assert isinstance(config.trainer.algorithm, GRPOConfig) and config.trainer.algorithm.clip_eps == 0.1
    with pytest.raises(ValidationError, match="beta"):
        RunConfig.from_yaml("trainer:\n  algorithm: {name: grpo, beta: 0.1}\n")


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("selfplay: {group_size: 1}", "group_size"),
        ("trainer: {learning_rate: -1}", "learning_rate"),
        ("unknown: 1", "unknown"),
        ("judge: {extra_criteria: [{name: x, weight: 9}]}", "weight"),
    ],
)
def test_bad_fields_are_named(text: str, field: str):
    with pytest.raises(ValidationError, match=field):
        RunConfig.from_yaml(text)


def test_non_mapping_yaml_is_refused():
    with pytest.raises(ValueError, match="mapping"):
        RunConfig.from_yaml("- a\n- b\n")


def test_roles_and_task_mix_are_validated():
    config = RunConfig.from_yaml(
        """
selfplay: {task_mix: {long_form_qa: 2, creative_writing: 1}}
roles:
  scorer: {base_url: "http://teacher:8000/v1", model: big, api_key_env: TEACHER_KEY}
"""
    )
    assert config.roles.scorer is not None and config.roles.proposer is None
    assert config.selfplay.task_mix == {"long_form_qa": 2.0, "creative_writing": 1.0}
    with pytest.raises(ValidationError, match="task weights must be > 0"):
        RunConfig.from_yaml("selfplay: {task_mix: {long_form_qa: -1}}")
    with pytest.raises(ValidationError, match="api_key"):
        RunConfig.from_yaml("roles: {solver: {base_url: x, model: m, api_key: sk-live}}")
    with pytest.raises(ValidationError, match="long_documents"):
        RunConfig.from_yaml("selfplay: {long_documents: shred}")


def test_learning_check_config_is_a_fixed_programmatic_rubric():
    config = RunConfig.from_file(ROOT / "configs" / "learning-check.yaml")
    assert not config.judge.write_rubric
    assert config.judge.extra_criteria and all(c.programmatic for c in config.judge.extra_criteria)


def test_a_fixed_rubric_needs_its_criteria():
    with pytest.raises(ValidationError, match="write_rubric: false needs extra_criteria"):
        RunConfig.from_yaml("judge: {write_rubric: false}\n")


def test_an_empty_eval_generator_or_judge_url_means_none(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("POP_GATEWAY_EVAL_GENERATOR_URL", "")  # compose's ${POP_EVAL_GENERATOR_URL:-}
    monkeypatch.setenv("POP_GATEWAY_JUDGE_URL", "")
    settings = GatewaySettings()
    assert settings.eval_generator_url is None and settings.judge_url is None
    monkeypatch.setenv("POP_GATEWAY_EVAL_GENERATOR_URL", "http://eval-generator:8000")
    assert GatewaySettings().eval_generator_url == "http://eval-generator:8000"


def test_a_model_revision_is_a_branch_tag_or_commit(monkeypatch: pytest.MonkeyPatch):
    for revision in ("main", "v2.0", "refs/pr/1", "0123456789abcdef0123456789abcdef01234567"):
        assert RunConfig.from_yaml(f"model: org/name\nmodel_revision: {revision}\n").model_revision == revision
    for bad in ("../../etc", "a b", "/abs", ".hidden", "''"):
        with pytest.raises(ValidationError, match="model_revision"):
            RunConfig.from_yaml(f"model_revision: {bad}\n")
    with pytest.raises(ValidationError, match="model"):
        RunConfig.from_yaml("model: ''\n")
    monkeypatch.setenv("POP_GENERATOR_MODEL_REVISION", "")  # compose's ${POP_MODEL_REVISION:-}: main
    assert GeneratorSettings().model_revision is None


def test_the_deploy_docs_memory_table_is_the_memory_models():
    """docs/deploy.md shows what ``python -m benchmarks.memory`` prints: edit the model, then the page."""
    from pathlib import Path

    from benchmarks import memory

    page = (Path(__file__).resolve().parents[2] / "docs" / "deploy.md").read_text()
    begin, end = "<!-- memory-table: python -m benchmarks.memory -->\n", "\n<!-- /memory-table -->"
    shown = page.split(begin, 1)[1].split(end, 1)[0]
    assert shown == memory.table()

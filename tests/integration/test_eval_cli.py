"""``pop eval``: endpoints side by side on an eval set, against the real tiny generator; bad arguments
are usage errors that say what to write instead."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from cli.__main__ import app
from tests.integration.test_dashboard import serve_gateway, settings_for


def test_two_endpoints_side_by_side_with_the_paired_gain(tiny_generator_url: str, tmp_path: Path):
    out = tmp_path / "reports.json"
    v1 = f"{tiny_generator_url}/v1"
    result = CliRunner().invoke(
        app,
        ["eval", "ifeval", "--endpoint", f"base={v1}", "--endpoint", f"trained={v1}", "--n", "2",
         "--max-tokens", "16", "--temperature", "1.0", "--output", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "overall" in result.output and "paired gain, trained over base" in result.output
    reports = json.loads(out.read_text())
    assert set(reports) == {"base", "trained"}
    assert reports["base"]["answers"] == reports["trained"]["answers"] == 32  # 16 prompts, 2 answers each
    assert set(reports["base"]["by_task_type"]) >= {"keywords", "length_constraints", "punctuation"}


def test_a_checkpoint_and_an_endpoint_through_the_gateway(
    tiny_generator_url: str, tiny_generator_admin: str, tmp_path: Path, redis_url: str
):
    settings = settings_for(
        tmp_path, redis_url, allowed_hosts=["127.0.0.1"],
        eval_generator_url=tiny_generator_admin, eval_generator_inference_url=tiny_generator_url,
    )  # fmt: skip
    with serve_gateway(settings) as gateway:
        run_id = httpx.post(f"{gateway}/v1/runs", json={"model": "pop/tiny"}).json()["id"]
        out = tmp_path / "reports.json"
        result = CliRunner().invoke(
            app,
            ["eval", "ifeval", "--gateway", gateway, "--checkpoint", f"base={run_id}:0", "--endpoint",
             f"direct={tiny_generator_url}/v1", "--limit", "3", "--max-tokens", "12", "--output", str(out)],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert "paired gain, base over direct" in result.output
        reports = json.loads(out.read_text())
        assert list(reports) == ["direct", "base"] and reports["base"]["run_id"] == run_id
        assert reports["base"]["version"] == 0 and len(reports["base"]["per_task"]) == 3
        listed = httpx.get(f"{gateway}/v1/evals", params={"run_id": run_id}).json()
        assert listed["total"] == 1 and listed["items"][0]["status"] == "completed"  # stored for the dashboard


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["eval", "mmlu", "--endpoint", "a=http://x/v1"], "the format must be one of ifeval, healthbench, heldout"),
        (["eval", "ifeval", "--endpoint", "http://x/v1"], "write LABEL=URL"),
        (["eval", "healthbench", "--endpoint", "a=http://127.0.0.1:9/v1"], "give --judge URL"),
        (["eval", "heldout", "--endpoint", "a=http://127.0.0.1:9/v1", "--judge", "http://127.0.0.1:9"],
         "give --config PATH"),
        (["eval", "ifeval"], "give at least one --endpoint or --checkpoint"),
        (["eval", "ifeval", "--checkpoint", "a=run:1"], "give --gateway URL"),
        (["eval", "ifeval", "--checkpoint", "a=run", "--gateway", "http://x"], "write LABEL=RUN_ID:VERSION"),
    ],
)  # fmt: skip
def test_bad_arguments_are_usage_errors_naming_the_fix(argv: list[str], message: str):
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.translate(str.maketrans("", "", "│╭╮╰╯─")).split())  # rich's error box
    assert message in text
